/** Service basics: XEP-0030 disco, XEP-0092 version, XEP-0199 ping, and the admin "stats" command. */
import { discoInfoResult, discoItemsResult } from "../../stanzas/disco.js";
import { formElement } from "../../stanzas/dataforms.js";
import { StanzaError, quote } from "../../stanzas/errors.js";
import { NS } from "../../stanzas/ns.js";
import { versionResult } from "../../stanzas/version.js";
import type { AppContext } from "./context.js";

export const SOFTWARE = { name: "cardlink", version: "0.1.0" };

export function attachService(app: AppContext): void {
  const { router, adhoc, config } = app;
  // Features known to the router are advertised automatically; these have no IQ route of their own.
  // Read per request: features attached after this module (push) decide whether they are on.
  const extraFeatures = (): string[] => [
    NS.DISCO_INFO,
    NS.DISCO_ITEMS,
    NS.DATA,
    // XEP-0059 §9: the lists in urn:cardlink:0 page with <set/> (component/runtime/paging.ts).
    NS.RSM,
    ...(app.pushAppServer ? [NS.PUSH] : []),
    // The modules' own (devices: urn:cardlink:0:device-delivery); push's is the line above.
    ...(app.moduleFeatures?.() ?? []),
  ];

  router.iq(
    "get",
    NS.DISCO_INFO,
    "query",
    (ctx) => {
      const node = ctx.payload.attrs.node;
      if (node) {
        const info = adhoc.info(node, ctx.user);
        if (node === NS.COMMANDS) {
          return discoInfoResult(
            [{ category: "automation", type: "command-list", name: "cardlink commands" }],
            [NS.COMMANDS],
            node,
          );
        }
        if (!info) throw new StanzaError("item-not-found", `no disco node '${quote(node)}'`);
        return info;
      }
      return discoInfoResult(
        [
          { category: "component", type: "generic", name: "cardlink contact cards" },
          { category: "automation", type: "command-list", name: "cardlink commands" },
          ...(app.pushAppServer ? [{ category: "pubsub", type: "push", name: "cardlink push" }] : []),
        ],
        [...router.features(), ...extraFeatures()],
      );
    },
    { allowServer: true },
  );

  router.iq(
    "get",
    NS.DISCO_ITEMS,
    "query",
    (ctx) => {
      const node = ctx.payload.attrs.node;
      if (node === NS.COMMANDS) return adhoc.items(ctx.user);
      if (node) throw new StanzaError("item-not-found", `no disco node '${quote(node)}'`);
      return discoItemsResult([]);
    },
    { allowServer: true },
  );

  router.iq(
    "get",
    NS.VERSION,
    "query",
    () => versionResult(SOFTWARE.name, SOFTWARE.version, `Node.js ${process.version}`),
    {
      allowServer: true,
    },
  );
  router.iq("get", NS.PING, "ping", () => undefined, { allowServer: true });

  adhoc.register({
    node: "urn:cardlink:cmd:stats",
    name: "Show cardlink statistics",
    adminOnly: true,
    run: async () => {
      // The queue gauges are read from the store: read them now, not as of the last scrape.
      await app.metrics.refresh();
      const snap = app.metrics.snapshot();
      return {
        status: "completed",
        form: formElement({
          type: "result",
          title: `cardlink ${SOFTWARE.version} on ${config.domain}`,
          fields: Object.keys(snap)
            .sort()
            .map((k) => ({ var: k, label: k, type: "text-single", values: [String(snap[k])] })),
        }),
      };
    },
  });
}
