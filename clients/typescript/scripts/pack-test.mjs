// Packs the package, installs the tarball into a fresh project and uses it from there:
// ESM import, type declarations (tsc against the installed package), and a real connection
// through the `ws` fallback (Node 20 has no global WebSocket) to a tiny local server.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "odin-client-pack-"));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "inherit"] }).toString();

try {
  const packed = JSON.parse(run(npm, ["pack", "--json", "--pack-destination", work], pkgDir));
  const { filename, files } = packed[0];
  const paths = files.map((f) => f.path);
  for (const want of ["package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/generated.js"]) {
    if (!paths.includes(want)) throw new Error(`tarball lacks ${want}`);
  }
  const stray = paths.filter((p) => !/^(package\.json|README\.md|dist\/)/.test(p));
  if (stray.length) throw new Error(`tarball carries files it should not: ${stray.join(", ")}`);
  console.log(`packed ${filename}: ${paths.length} files`);

  const app = join(work, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  run(npm, ["install", "--no-audit", "--no-fund", "--loglevel=error", join(work, filename)], app);

  writeFileSync(
    join(app, "check.ts"),
    `import { connect, OdinClient, EVENT_TYPES, type EventFrame, type BundleName } from "@odin-stream/client";
const bundle: BundleName = "TRADING";
const client: OdinClient = connect({ url: "ws://localhost:1/ws", token: async () => "t" });
client.subscribe({ bundle, tokens: ["BTC"], maxRate: 5 }, (e: EventFrame) => e.offset.toFixed());
client.close();
export const n: 23 = EVENT_TYPES.length;
`,
  );
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { strict: true, module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", lib: ["ES2022", "DOM"], noEmit: true, types: [] },
      files: ["check.ts"],
    }),
  );
  run(process.execPath, [join(pkgDir, "node_modules", "typescript", "bin", "tsc"), "-p", "."], app);
  console.log("type declarations: ok (tsc --strict against the installed package)");

  writeFileSync(
    join(app, "smoke.mjs"),
    `import { WebSocketServer } from "ws";
import { connect, EVENT_TYPES } from "@odin-stream/client";
if (EVENT_TYPES.length !== 23) throw new Error("EVENT_TYPES");
const wss = new WebSocketServer({ port: 0 });
await new Promise((r) => wss.once("listening", r));
wss.on("connection", (ws) => ws.on("message", (m) => {
  const f = JSON.parse(String(m));
  if (f.type !== "subscribe") return;
  ws.send(JSON.stringify({ type: "event", channel: "BTC.trade", event: "TRADE_EXECUTED", timestamp: 1, offset: 41, data: {} }));
  ws.send(JSON.stringify({ type: "subscribed", id: f.id, channels: f.channels }));
}));
const client = connect({ url: "ws://127.0.0.1:" + wss.address().port + "/ws" });
const got = new Promise((resolve, reject) => {
  setTimeout(() => reject(new Error("no event within 5 s")), 5000).unref();
  client.on("event", resolve);
});
const sub = client.subscribe({ channels: ["BTC.trade"] });
const [e] = await Promise.all([got, sub.ready]);
if (e.offset !== 41) throw new Error("wrong event " + JSON.stringify(e));
client.close();
wss.close();
console.log("installed package: imported, connected through " + (typeof WebSocket === "function" ? "the global WebSocket" : "ws") + ", received an event");
`,
  );
  process.stdout.write(run(process.execPath, ["smoke.mjs"], app));
  console.log("pack test: ok");
} finally {
  rmSync(work, { recursive: true, force: true });
}
