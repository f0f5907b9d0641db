// usage: node benches/peers/llamacpp_greedy.mjs MODEL.gguf "ID ID ID ..." [N]
//
// llama.cpp's greedy continuation of a prompt given as token ids: prints N (default 16) new
// ids on one line, the form `llm gpt generate --prompt-ids ... --greedy` prints. It loads
// the model as a user of llama.cpp would, through the npm package node-llama-cpp (its
// prebuilt CPU build of llama.cpp, nothing compiled), CPU only, one sequence, temperature 0,
// not stopping at end-of-generation tokens, flash attention off. The package is found in LLAMACPP_DIR (default
// ~/.cache/llm-lessons-llamacpp), installed there by
//
//   npm install --prefix DIR --omit=optional --ignore-scripts node-llama-cpp@3.21.1 @node-llama-cpp/linux-x64@3.21.1
//
// (`--ignore-scripts`: never fall back to building llama.cpp; `--omit=optional`: no GPU
// builds). Run it from a file, not `node -e`: node-llama-cpp tests its binary from a file.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [modelPath, idsText, nText = "16"] = process.argv.slice(2);
if (!modelPath || idsText === undefined) {
  console.error('usage: node llamacpp_greedy.mjs MODEL.gguf "ID ID ..." [N]');
  process.exit(2);
}
const dir = process.env.LLAMACPP_DIR || path.join(os.homedir(), ".cache", "llm-lessons-llamacpp");
const entry = path.join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
if (!fs.existsSync(entry)) {
  console.error(`node-llama-cpp is not installed in ${dir} (see the usage comment at the top of this file)`);
  process.exit(2);
}
const nlc = await import(pathToFileURL(entry).href);
const llama = await nlc.getLlama({gpu: false, build: "never", logLevel: nlc.LlamaLogLevel.error});
const ids = idsText.trim().split(/\s+/).map(Number);
const n = Number(nText);
const model = await llama.loadModel({modelPath});
// flash attention off: llama.cpp then computes attention in the plain order (softmax, then V)
const ctx = await model.createContext({contextSize: Math.min(model.trainContextSize, 4096), threads: 1, flashAttention: false});
const seq = ctx.getSequence();
const out = [];
for await (const tok of seq.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
  out.push(tok);
  if (out.length >= n) break;
}
console.log(out.join(" "));
console.error(`llama.cpp ${llama.llamaCppRelease.release} (node-llama-cpp), model ${model.fileInfo.metadata.general.name}`);
await model.dispose();
await llama.dispose();
