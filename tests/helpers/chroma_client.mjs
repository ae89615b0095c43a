// Runs Chroma's real JavaScript client (npm `chromadb`, the 3.x line that talks to Chroma 1.x)
// for the tests. Reads one JSON request on stdin, so secrets stay off argv:
//   {"url": "https://127.0.0.1:PORT", "token": "...", "header": "Authorization"|"X-Chroma-Token",
//    "ops": ["heartbeat", "create", "add", "count"]}
// and prints one JSON object: {op: "ok" | "error: ...", "records": N}. A CA for https comes from
// NODE_EXTRA_CA_CERTS, as chromactl tells operators: Node's fetch takes no other.
import { ChromaClient } from "chromadb";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString());
const url = new URL(request.url);
const headers = {};
if (request.token) {
  if (request.header === "X-Chroma-Token") headers["X-Chroma-Token"] = request.token;
  else headers["Authorization"] = `Bearer ${request.token}`;
}
const client = new ChromaClient({
  host: url.hostname, port: Number(url.port), ssl: url.protocol === "https:", headers,
});
const result = {};
let collection;
for (const op of request.ops) {
  try {
    if (op === "heartbeat") await client.heartbeat();
    else if (op === "create") collection = await client.getOrCreateCollection({ name: "jsdocs", embeddingFunction: null });
    else if (op === "add") await collection.add({ ids: ["j1", "j2"], embeddings: [[1, 0, 0], [0, 1, 0]] });
    else if (op === "count") result.records = await collection.count();
    result[op] = "ok";
  } catch (error) {
    const cause = error.cause ? ` (cause: ${error.cause.code || error.cause.message})` : "";
    result[op] = `error: ${error.name}: ${error.message}${cause}`.slice(0, 300);
    break;
  }
}
console.log(JSON.stringify(result));
