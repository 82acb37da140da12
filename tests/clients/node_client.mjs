// A third-party WebSocket client for the tests: Node's `ws` package.
//
//   node node_client.mjs URL CASE_JSON [CASE_JSON ...]
//
// Each CASE_JSON is {"protocols": [...] (omit for none), "origin": "..." (omit
// for none, as non-browser clients do), "message": "..."}. For each case, in
// order, it connects to URL, waits for the welcome, sends the message, waits
// for its echo and closes with 1000. It prints one JSON line first describing
// itself ({"client": "ws", ...}), then one JSON line per case with what it saw.
// Every wait is bounded; the exit code is 0 once every case has reported.

import { createRequire } from "node:module";
import WebSocket from "ws";

const require = createRequire(import.meta.url);
const WS_VERSION = require("ws/package.json").version;
const CASE_TIMEOUT_MS = 8000;

function runCase(url, spec) {
  return new Promise((resolve) => {
    const result = {
      offered: spec.protocols ?? null,
      origin: spec.origin ?? null,
      opened: false,
      protocol: null,
      messages: [],
      error: null,
      close: null,
      timedOut: false,
    };
    const options = { handshakeTimeout: CASE_TIMEOUT_MS, perMessageDeflate: false };
    if (spec.origin !== undefined) options.origin = spec.origin;
    let ws;
    try {
      ws =
        spec.protocols === undefined
          ? new WebSocket(url, options)
          : new WebSocket(url, spec.protocols, options);
    } catch (err) {
      result.error = `${err.name}: ${err.message}`;
      resolve(result);
      return;
    }
    const timer = setTimeout(() => {
      result.timedOut = true;
      ws.terminate();
      resolve(result);
    }, CASE_TIMEOUT_MS);
    ws.on("open", () => {
      result.opened = true;
      result.protocol = ws.protocol;
    });
    ws.on("message", (data, isBinary) => {
      result.messages.push(isBinary ? { binary: data.toString("base64") } : data.toString("utf8"));
      if (result.messages.length === 1) ws.send(spec.message ?? "Hello Spry!");
      else if (result.messages.length === 2) ws.close(1000, "done");
    });
    ws.on("error", (err) => {
      result.error = err.message;
    });
    ws.on("close", (code, reason) => {
      clearTimeout(timer);
      result.close = { code, reason: reason.toString("utf8") };
      resolve(result);
    });
  });
}

const [url, ...cases] = process.argv.slice(2);
if (!url) {
  console.error("usage: node node_client.mjs URL CASE_JSON [CASE_JSON ...]");
  process.exit(2);
}
console.log(JSON.stringify({ client: "ws", version: WS_VERSION, node: process.version }));
for (const raw of cases) {
  console.log(JSON.stringify(await runCase(url, JSON.parse(raw))));
}
