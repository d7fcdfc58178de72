/**
 * The identity feature module (issue 12; docs/PROTOCOL.md §23, namespace `urn:cardlink:identity:0`): phone
 * numbers and e-mail addresses proven by a code (the verification connector, verifier.ts), moves of an identifier
 * (a JID move confirmed by the old account, XEP-0283 0.2; a phone or e-mail move confirmed by a code sent to the
 * old one), the held cooldown of a moved or removed identifier, and the services registered
 * under an identifier with the update request, its XEP-0004 confirmation and the manual list. Ad-hoc commands
 * give a generic client the update request and the manual list. Migrations 3300–3399; erases its rows on
 * `account.deleting`; sweeps expired codes, offers and lapsed holds every 60 s.
 */
import type { CommandRequest } from "../../../stanzas/adhoc.js";
import { firstValue, formElement, parseForm } from "../../../stanzas/dataforms.js";
import { StanzaError, badRequest } from "../../../stanzas/errors.js";
import {
  identifiersElement,
  identifierElement,
  manualListForm,
  moveElement,
  parseCode,
  parseKind,
  parseService,
  parseServicesSubmit,
  serviceElement,
  servicesForm,
  type ServiceView,
} from "../../../stanzas/identity.js";
import { NS } from "../../../stanzas/ns.js";
import { childElements, xml, type Element } from "../../../stanzas/xml.js";
import type { CommandStep } from "../../runtime/adhoc.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import { detach } from "../../runtime/log.js";
import { pageList } from "../../runtime/paging.js";
import { IDENTITY_MIGRATIONS } from "./migrations.js";
import { MOVED_KIND, SERVICE_KIND } from "./render.js";
import { IdentityService, eraseIdentity, recordResult } from "./service.js";
import { httpVerifier, type Verifier } from "./verifier.js";

/** Service registration messages one `<services-sync/>` may carry. */
export const SYNC_BATCH_MAX = 100;

export const CMD_UPDATE_SERVICES = "urn:cardlink:cmd:update-services";
export const CMD_MANUAL_SERVICES = "urn:cardlink:cmd:manual-services";
const FORM_UPDATE_REQUEST = "urn:cardlink:identity:0#update-request";

const attr = (el: Element, name: string): string => {
  const v = el.attrs[name] as string | undefined;
  if (v === undefined || v.trim() === "") throw badRequest(`'${name}' is required`);
  return v;
};

function parseReceived(v: string | undefined, now: number): number {
  if (v === undefined) return now;
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw badRequest("'received' is an ISO 8601 date-time");
  return Math.min(t, now); // a clock ahead of ours is not trusted past now
}

const confirmResult = (update: string, selected: readonly ServiceView[], manual: readonly ServiceView[]) =>
  xml(
    "confirm-services",
    { xmlns: NS.IDENTITY, update },
    ...selected.map(serviceElement),
    xml("manual", {}, ...manual.map(serviceElement)),
  );

export function identityModule(o: { verifier?: Verifier } = {}): FeatureModule {
  let sweeper: NodeJS.Timeout | undefined;
  return {
    name: "identity",
    migrations: IDENTITY_MIGRATIONS,
    kinds: [MOVED_KIND, SERVICE_KIND],
    onAccountDeleting: (u, e) => eraseIdentity(u, e.account),
    discoFeatures: () => [NS.IDENTITY, NS.MOVED],
    attach(rt: Runtime): void {
      const cfg = rt.config.identity;
      const svc = new IdentityService({
        uow: rt.uow,
        read: rt.read,
        config: cfg,
        log: rt.log,
        connectors: rt.config.webhooks.connectors.map((c) => c.name),
        verifier:
          o.verifier ??
          httpVerifier({ url: cfg.verifierUrl, token: cfg.verifierToken, timeoutMs: cfg.verifierTimeoutMs }),
      });
      const ns = NS.IDENTITY;
      const r = rt.router;
      rt.events.onTx("job.settled", (u, e) => recordResult(u, e));

      // --- identifiers (§23.2, §23.3)
      r.iq("get", ns, "identifiers", async (c) => {
        const l = await svc.list(c.user);
        return xml(
          "identifiers",
          { xmlns: ns },
          ...identifiersElement(l.identifiers).children.filter((x): x is Element => typeof x !== "string"),
          ...l.moves.map((m) => {
            const el = moveElement(m);
            delete el.attrs.xmlns;
            return el;
          }),
        );
      });
      r.iq("set", ns, "add-identifier", async (c) => {
        const kind = parseKind(c.payload.attrs.kind as string | undefined);
        const a = await svc.add(c.user, kind, attr(c.payload, "value"));
        return xml("add-identifier", {
          xmlns: ns,
          kind,
          value: a.value,
          expires: new Date(a.expiresAt).toISOString(),
        });
      });
      r.iq("set", ns, "verify-identifier", async (c) => {
        const kind = parseKind(c.payload.attrs.kind as string | undefined);
        const code = parseCode(c.payload.attrs.code as string | undefined);
        const v = await svc.verify(c.user, kind, attr(c.payload, "value"), code);
        const el = identifierElement(v);
        el.attrs.xmlns = ns;
        return el;
      });
      r.iq("set", ns, "remove-identifier", async (c) => {
        const kind = parseKind(c.payload.attrs.kind as string | undefined);
        const h = await svc.remove(c.user, kind, attr(c.payload, "value"));
        return xml("remove-identifier", { xmlns: ns, "held-until": new Date(h.heldUntil).toISOString() });
      });

      // --- moves (§23.4)
      r.iq("set", ns, "move", async (c) => {
        const kind = parseKind(c.payload.attrs.kind as string | undefined);
        const to = attr(c.payload, "to");
        if (kind === "jid") return moveElement(await svc.offerJid(c.user, to));
        return moveElement(await svc.offerOther(c.user, kind, attr(c.payload, "from"), to));
      });
      r.iq("set", ns, "move-accept", async (c) => {
        const m = await svc.acceptJid(c.user, attr(c.payload, "from"));
        rt.log.info({ event: "identifier-moved", kind: "jid", lanes: m.holders }, "JID moved");
        rt.metrics.inc("cardlink_identifier_moves_total", { kind: "jid" });
        return moveElement(m);
      });
      r.iq("set", ns, "move-confirm", async (c) => {
        const code = parseCode(c.payload.attrs.code as string | undefined);
        const m = await svc.confirmMove(c.user, attr(c.payload, "id"), code);
        rt.metrics.inc("cardlink_identifier_moves_total", { kind: m.kind });
        return moveElement(m);
      });
      r.iq("set", ns, "move-withdraw", async (c) => {
        const kind = parseKind(c.payload.attrs.kind as string | undefined);
        const had = await svc.withdraw(c.user, kind);
        return xml("move-withdraw", { xmlns: ns, withdrawn: had ? "true" : "false" });
      });

      // --- registered services (§23.6–§23.8)
      r.iq("set", ns, "services-sync", async (c) => {
        const items = childElements(c.payload);
        if (items.length > SYNC_BATCH_MAX)
          throw badRequest(`at most ${SYNC_BATCH_MAX} <service/> per <services-sync/>`);
        const now = Date.now();
        const parsed = items.map((el) => {
          if (!el.is("service")) throw badRequest("<services-sync/> holds <service/> elements");
          return {
            ...parseService(el),
            kind: parseKind(el.attrs.kind as string | undefined),
            identifier: attr(el, "identifier"),
            receivedAt: parseReceived(el.attrs.received as string | undefined, now),
          };
        });
        const s = await svc.syncServices(c.user, parsed);
        return xml("services-sync", { xmlns: ns, added: String(s.added), updated: String(s.updated) });
      });
      r.iq("get", ns, "services", async (c) => {
        const page = await pageList(
          c.payload,
          await svc.services(c.user),
          (s) => s.id,
          serviceElement,
          rt.budget,
        );
        return xml("services", { xmlns: ns }, ...page.items, page.set);
      });
      r.iq("set", ns, "remove-service", async (c) => {
        await svc.removeService(c.user, attr(c.payload, "id"));
      });
      r.iq("set", ns, "update-services", async (c) => {
        const kind = parseKind(c.payload.attrs.kind as string | undefined);
        const u = await svc.requestUpdate(c.user, kind, attr(c.payload, "from"), attr(c.payload, "to"));
        return xml(
          "update-services",
          { xmlns: ns, id: u.update, kind, from: u.from, to: u.to },
          servicesForm({ ...u, automatic: u.automatic, manual: u.manual }),
        );
      });
      r.iq("set", ns, "confirm-services", async (c) => {
        const x = c.payload.getChild("x", NS.DATA);
        if (!x) throw badRequest("<confirm-services/> carries the submitted form");
        const f = parseServicesSubmit(x);
        const out = await svc.confirmUpdate(c.user, f.update, f.selected);
        return confirmResult(f.update, out.selected, out.manual);
      });
      r.iq("get", ns, "manual-services", async (c) => {
        const page = await pageList(
          c.payload,
          await svc.manualList(c.user),
          (s) => s.id,
          serviceElement,
          rt.budget,
        );
        return xml("manual-services", { xmlns: ns }, ...page.items, page.set);
      });
      r.iq("set", ns, "service-done", async (c) => {
        const s = await svc.markDone(c.user, attr(c.payload, "id"));
        return xml("service-done", { xmlns: ns }, serviceElement(s));
      });

      // --- ad-hoc commands for generic clients (§23.9)
      rt.adhoc.register({
        node: CMD_UPDATE_SERVICES,
        name: "Update my registered services to a new phone number or address",
        run: (ctx, req, state) => updateCommand(svc, ctx.user, req, state),
      });
      rt.adhoc.register({
        node: CMD_MANUAL_SERVICES,
        name: "Services to update by hand",
        run: async (ctx): Promise<CommandStep> => ({
          status: "completed",
          form: manualListForm(await svc.manualList(ctx.user)),
        }),
      });

      sweeper = setInterval(() => detach(rt.log, "identity-sweep-failed", svc.sweep()), 60_000);
      sweeper.unref();
    },
    async stop() {
      clearInterval(sweeper);
    },
  };
}

/**
 * Three stages: (1) which identifier changed (a form), (2) the confirmation form of the automatic items,
 * (3) the manual list. The same service calls as the IQs.
 */
async function updateCommand(
  svc: IdentityService,
  user: string,
  req: CommandRequest,
  state: Record<string, unknown> | undefined,
): Promise<CommandStep> {
  if (state === undefined) {
    return {
      status: "executing",
      actions: ["next"],
      state: { stage: "request" },
      form: formElement({
        type: "form",
        formType: FORM_UPDATE_REQUEST,
        title: "Your identifier changed",
        fields: [
          {
            var: "kind",
            type: "list-single",
            label: "Kind",
            required: true,
            values: ["tel"],
            options: [
              { label: "Phone number", value: "tel" },
              { label: "E-mail address", value: "email" },
              { label: "JID", value: "jid" },
            ],
          },
          { var: "from", type: "text-single", label: "Old", required: true },
          { var: "to", type: "text-single", label: "New (verified)", required: true },
        ],
      }),
    };
  }
  if (!req.form) throw new StanzaError("bad-request", "this step needs the submitted form");
  if (state.stage === "request") {
    const v = parseForm(req.form).values;
    const kind = parseKind(firstValue(v, "kind"));
    const u = await svc.requestUpdate(user, kind, firstValue(v, "from") ?? "", firstValue(v, "to") ?? "");
    return {
      status: "executing",
      actions: ["complete"],
      state: { stage: "confirm", update: u.update },
      form: servicesForm(u),
    };
  }
  const f = parseServicesSubmit(req.form);
  if (f.update !== state.update) throw badRequest("the form names another update");
  const out = await svc.confirmUpdate(user, f.update, f.selected);
  return {
    status: "completed",
    form: manualListForm(out.manual),
    notes: [
      {
        type: "info",
        text: `${out.selected.length} service(s) selected for an automatic update; ${out.manual.length} to update by hand`,
      },
    ],
  };
}
