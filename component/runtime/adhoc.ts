/**
 * XEP-0050 ad-hoc command registry. Features register commands; this module owns sessions (unique ids, bound to
 * the full JID that started them, expiring), listing via disco#items, and the error rules of XEP-0050 §4.6.
 */
import { randomUUID } from "node:crypto";
import { commandElement, parseCommand, type CommandRequest } from "../../stanzas/adhoc.js";
import { discoInfoResult, discoItemsResult } from "../../stanzas/disco.js";
import { StanzaError, quote } from "../../stanzas/errors.js";
import { NS } from "../../stanzas/ns.js";
import type { Element } from "../../stanzas/xml.js";
import type { IqContext, Router } from "./router.js";

export interface CommandStep {
  status: "executing" | "completed";
  form?: Element;
  notes?: Array<{ type: "info" | "warn" | "error"; text: string }>;
  actions?: Array<"next" | "prev" | "complete">;
  /** State kept for the next stage of a multi-stage command. */
  state?: Record<string, unknown>;
}

export interface Command {
  node: string;
  name: string;
  adminOnly?: boolean;
  /** stage 0 = execute; later stages receive the submitted form and the state from the previous step. */
  run(
    ctx: IqContext,
    req: CommandRequest,
    state: Record<string, unknown> | undefined,
  ): Promise<CommandStep> | CommandStep;
}

interface Session {
  node: string;
  /** The full JID that started it (only it may continue it). */
  owner: string;
  /** Its bare JID, whose share the session counts against. */
  user: string;
  state: Record<string, unknown> | undefined;
  expires: number;
}

const SESSION_TTL_MS = 10 * 60_000;

export interface SessionLimits {
  /** All users together (limits.adhocSessions). */
  maxSessions: number;
  /** Per bare JID (limits.adhocSessionsPerUser): one user at the cap never affects another. */
  maxSessionsPerUser: number;
}

export class AdhocCommands {
  private readonly commands = new Map<string, Command>();
  private readonly sessions = new Map<string, Session>();
  /** Open session ids per bare JID (every resource of a user draws on one share). */
  private readonly byUser = new Map<string, Set<string>>();

  constructor(
    private readonly domain: string,
    private readonly admins: Set<string>,
    private readonly limits: SessionLimits = { maxSessions: 10_000, maxSessionsPerUser: 10 },
  ) {}

  /** Open sessions of one user (bare JID). */
  openSessions(user: string): number {
    return this.byUser.get(user)?.size ?? 0;
  }

  register(c: Command): void {
    if (this.commands.has(c.node)) throw new Error(`command ${c.node} registered twice`);
    this.commands.set(c.node, c);
  }

  private visible(user: string): Command[] {
    return [...this.commands.values()].filter((c) => !c.adminOnly || this.admins.has(user));
  }

  /** disco#items for node http://jabber.org/protocol/commands */
  items(user: string): Element {
    return discoItemsResult(
      this.visible(user).map((c) => ({ jid: this.domain, node: c.node, name: c.name })),
      NS.COMMANDS,
    );
  }

  /** disco#info for a command node (XEP-0050 §2.3), or undefined if the node is not a command. */
  info(node: string, user: string): Element | undefined {
    const c = this.commands.get(node);
    if (!c || (c.adminOnly && !this.admins.has(user))) return undefined;
    return discoInfoResult(
      [{ category: "automation", type: "command-node", name: c.name }],
      [NS.COMMANDS, NS.DATA],
      node,
    );
  }

  attach(router: Router): void {
    router.iq("set", NS.COMMANDS, "command", (ctx) => this.execute(ctx));
  }

  private async execute(ctx: IqContext): Promise<Element> {
    const req = parseCommand(ctx.payload);
    const cmd = this.commands.get(req.node);
    if (!cmd) throw new StanzaError("item-not-found", `no command '${quote(req.node)}'`);
    if (cmd.adminOnly && !this.admins.has(ctx.user)) {
      throw new StanzaError("forbidden", `'${cmd.name}' is for cardlink administrators`);
    }
    this.expire();
    let state: Record<string, unknown> | undefined;
    let sessionid = req.sessionid;
    if (sessionid) {
      const s = this.sessions.get(sessionid);
      if (!s || s.owner !== ctx.from.full || s.node !== req.node) {
        throw new StanzaError("bad-request", "unknown or expired command session", {
          appCondition: "bad-sessionid",
          appNs: NS.COMMANDS,
        });
      }
      state = s.state;
      if (req.action === "cancel") {
        this.close(sessionid);
        return commandElement({ node: req.node, sessionid, status: "canceled" });
      }
    } else {
      if (req.action === "cancel") throw new StanzaError("bad-request", "nothing to cancel");
      // Refuse rather than evict the user's oldest session: that one may be a form open in another client,
      // and silently breaking it is worse than a clear answer (sessions expire after 10 min, or cancel one).
      if (this.openSessions(ctx.user) >= this.limits.maxSessionsPerUser) {
        throw new StanzaError(
          "resource-constraint",
          `you have ${this.limits.maxSessionsPerUser} open command sessions; complete or cancel one, or wait 10 minutes`,
          { type: "wait" },
        );
      }
      if (this.sessions.size >= this.limits.maxSessions) {
        throw new StanzaError("resource-constraint", "too many open command sessions; try again later", {
          type: "wait",
        });
      }
      sessionid = randomUUID();
    }
    const step = await cmd.run(ctx, req, state);
    if (step.status === "executing") {
      this.sessions.set(sessionid, {
        node: req.node,
        owner: ctx.from.full,
        user: ctx.user,
        state: step.state,
        expires: Date.now() + SESSION_TTL_MS,
      });
      let mine = this.byUser.get(ctx.user);
      if (!mine) this.byUser.set(ctx.user, (mine = new Set()));
      mine.add(sessionid);
    } else {
      this.close(sessionid);
    }
    return commandElement({
      node: req.node,
      sessionid,
      status: step.status,
      ...(step.actions
        ? { actions: step.actions }
        : step.status === "executing"
          ? { actions: ["complete"] }
          : {}),
      ...(step.notes ? { notes: step.notes } : {}),
      ...(step.form ? { form: step.form } : {}),
    });
  }

  private close(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    const mine = this.byUser.get(s.user);
    if (mine?.delete(id) && mine.size === 0) this.byUser.delete(s.user);
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, s] of this.sessions) if (s.expires < now) this.close(id);
  }
}
