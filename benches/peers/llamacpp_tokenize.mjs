// usage: node benches/peers/llamacpp_tokenize.mjs MODEL.gguf TEXT_FILE
//
// llama.cpp's token ids for a text, with the tokenizer stored in a GGUF file (no BOS, special
// tokens written in the text taken as plain text): one line of ids, the form `llm bpe encode`
// prints. For checking that the vocabulary `llm quant quantize` writes tokenizes as the
// model folder's tokenizer does. node-llama-cpp is found as in llamacpp_greedy.mjs.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [modelPath, textPath] = process.argv.slice(2);
if (!modelPath || !textPath) {
  console.error("usage: node llamacpp_tokenize.mjs MODEL.gguf TEXT_FILE");
  process.exit(2);
}
const dir = process.env.LLAMACPP_DIR || path.join(os.homedir(), ".cache", "llm-lessons-llamacpp");
const entry = path.join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
if (!fs.existsSync(entry)) {
  console.error(`node-llama-cpp is not installed in ${dir} (see llamacpp_greedy.mjs)`);
  process.exit(2);
}
const nlc = await import(pathToFileURL(entry).href);
const llama = await nlc.getLlama({gpu: false, build: "never", logLevel: nlc.LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const ids = model.tokenize(fs.readFileSync(textPath, "utf8"), false);
console.log(Array.from(ids).join(" "));
await model.dispose();
await llama.dispose();
