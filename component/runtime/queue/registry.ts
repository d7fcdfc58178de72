/**
 * The registry of stream kinds (docs/REDESIGN.md §2.3.2, §3.3): each kind of XMPP update declares its coalescing
 * rule (`replace`: one pending entry per (lane, kind, subject), moved to the newest change; `keep`: one entry per
 * instance, a second append of one subject is a bug), how its wire subject renders, whether it wakes offline
 * recipients, and its renderer. Features register their kinds once at start-up; stream-tx.ts asks the registry
 * for the rule of every append, and delivery (S7) for the renderer.
 */
import type { Seq } from "../../../storage/store.js";
import type { StreamKind } from "./api.js";

/** A wire kind: what `<update kind='…'/>` carries and what an update id starts with (no `:`, it separates). */
const KIND_NAME = /^[a-z][a-z0-9-]{0,31}$/;

export class KindRegistry {
  private readonly kinds = new Map<string, StreamKind>();

  /** Registers a kind; a second kind of one name, or a name that cannot be a wire kind, is a start-up error. */
  register(k: StreamKind): void {
    if (!KIND_NAME.test(k.name))
      throw new Error(`stream kind name '${k.name}' is not a wire kind (${KIND_NAME})`);
    if (k.coalesce !== "replace" && k.coalesce !== "keep") {
      throw new Error(`stream kind '${k.name}': coalesce must be 'replace' or 'keep'`);
    }
    if (this.kinds.has(k.name)) throw new Error(`stream kind '${k.name}' is registered twice`);
    this.kinds.set(k.name, k);
  }

  /** The kind of that name, or undefined (stream-tx.ts refuses appends of unknown kinds). */
  get(name: string): StreamKind | undefined {
    return this.kinds.get(name);
  }

  /** Registered kinds, in registration order. */
  list(): StreamKind[] {
    return [...this.kinds.values()];
  }

  /** Names of the kinds that wake offline recipients (the push-scan observer's filter). */
  waking(): string[] {
    return this.list()
      .filter((k) => k.wake)
      .map((k) => k.name);
  }
}

/**
 * The wire id of one update, exactly as component/delivery.ts renders it today: `kind:subject:seq`, where
 * `subject` is the **wire** subject (a kind about a user: that user's current bare JID; else the entity id),
 * rendered at delivery (§2.8.3), and `seq` the entry's change number.
 */
export function updateId(kind: string, wireSubject: string, seq: Seq): string {
  return `${kind}:${wireSubject}:${seq}`;
}

/**
 * The parts of an update id. Kinds have no `:`, a seq is decimal, and the subject is everything between (a bare
 * JID has no `:`, but an entity id may). Undefined for a string that is not an update id.
 */
export function parseUpdateId(id: string): { kind: string; subject: string; seq: Seq } | undefined {
  const first = id.indexOf(":");
  const last = id.lastIndexOf(":");
  if (first <= 0 || last <= first + 1) return undefined;
  const kind = id.slice(0, first);
  const seqText = id.slice(last + 1);
  if (!KIND_NAME.test(kind) || !/^(0|[1-9][0-9]{0,15})$/.test(seqText)) return undefined;
  const seq = Number(seqText);
  if (!Number.isSafeInteger(seq)) return undefined;
  return { kind, subject: id.slice(first + 1, last), seq };
}
