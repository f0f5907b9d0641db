// usage: node benches/peers/llamacpp_tokenize.mjs MODEL.gguf TEXT_FILE [--special]
//        node benches/peers/llamacpp_tokenize.mjs MODEL.gguf --json TEXTS.json [--special]
//
// llama.cpp's token ids for a text, with the tokenizer stored in a GGUF file (no BOS): one
// line of ids, the form `llm bpe encode` prints. With --json, for each string of a JSON list:
// prints {"versions": {...}, "ids": [[...], ...]}. --special matches special tokens written
// in the text (<|im_start|>, ...), as `llm bpe encode --model` and Hugging Face tokenizers
// do; without it they are plain text. For checking that the vocabulary `llm quant quantize`
// writes tokenizes as the model folder's tokenizer does, and SmolLM2's tokenizer
// (smollm2_tokenizer_ref.py). node-llama-cpp is found as in llamacpp_greedy.mjs.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const args = process.argv.slice(2);
const special = args.includes("--special");
const json = args.includes("--json");
const [modelPath, textPath] = args.filter(a => !a.startsWith("--"));
if (!modelPath || !textPath) {
  console.error("usage: node llamacpp_tokenize.mjs MODEL.gguf (TEXT_FILE | --json TEXTS.json) [--special]");
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
const model = await llama.loadModel({modelPath, vocabOnly: true});
const input = fs.readFileSync(textPath, "utf8");
if (json) {
  const version = JSON.parse(fs.readFileSync(path.join(dir, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version;
  const ids = JSON.parse(input).map(t => Array.from(model.tokenize(t, special)));
  console.log(JSON.stringify({versions: {"node-llama-cpp": version, "llama.cpp": llama.llamaCppRelease.release}, ids}));
} else {
  console.log(Array.from(model.tokenize(input, special)).join(" "));
}
await model.dispose();
await llama.dispose();
