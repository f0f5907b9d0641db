// usage: node run.mjs MODEL.gguf [THREADS] [--new 64] [--prefill 256] [--reps 3] [--flash auto|true|false] [--prompt TEXT]
// llama.cpp speed on this machine: greedy decode tokens/s (KV cache, batch 1, timed from the first
// generated token to the last, so the prompt is not counted) and prefill tokens/s (one prompt of
// --prefill tokens, evaluated in batches of 512), at THREADS threads (default 2), --reps times each;
// prints every rep and the median, and the load average before and after (os.loadavg, like uptime).
// --flash: flash attention, default "auto" (llama.cpp's own choice, what a user gets).
// Also prints the load time: from loading the library to a context ready to run.
import {parseArgs} from "node:util";
import os from "node:os";
import {loadLlama, loadAvg, greedy, median} from "./lib.mjs";

const {values: o, positionals} = parseArgs({allowPositionals: true, options: {
  new: {type: "string", default: "64"}, prefill: {type: "string", default: "256"},
  reps: {type: "string", default: "3"}, flash: {type: "string", default: "auto"}, prompt: {type: "string", default: "The capital of France is"}}});
const [modelPath, thr = "2"] = positionals;
if (!modelPath) { console.error("usage: node run.mjs MODEL.gguf [THREADS] [--new 64] [--prefill 256] [--reps 3] [--flash auto|true|false]"); process.exit(2); }
const flash = o.flash === "auto" ? "auto" : o.flash === "true";
const threads = Number(thr), nNew = Number(o.new), nPrefill = Number(o.prefill), reps = Number(o.reps);

const tLoad = performance.now();
const {llama, versions} = await loadLlama();
const model = await llama.loadModel({modelPath});
const ctx = await model.createContext({contextSize: Math.max(1024, nPrefill + 8, nNew + 64), threads, batchSize: 512, flashAttention: flash});
const loadMs = performance.now() - tLoad;
const seq = ctx.getSequence();
console.log(`node-llama-cpp ${versions.nodeLlamaCpp}, llama.cpp release ${versions.llamaCppRelease}; model ${model.fileInfo.metadata.general.name}; ` +
            `${os.cpus().length} CPUs (${os.cpus()[0].model}); threads ${threads}; flash attention ${o.flash}; load average before: ${loadAvg()}`);
console.log(`load ${loadMs.toFixed(1)} ms (library, model and a context of ${ctx.contextSize} positions)`);

const ids = model.tokenize(o.prompt);
const filler = model.tokenize("The quick brown fox jumps over the lazy dog. ".repeat(Math.ceil(nPrefill / 9) + 1)).slice(0, nPrefill);
const dec = [], pre = [];
let text = "";
for (let r = 0; r < reps; r++) {
  await seq.clearHistory();
  const out = []; let tFirst = 0;
  const t0 = performance.now();
  for await (const tok of seq.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
    if (out.length === 0) tFirst = performance.now();
    out.push(tok);
    if (out.length >= nNew + 1) break;
  }
  const t1 = performance.now();
  dec.push(nNew / ((t1 - tFirst) / 1000));
  text = model.detokenize(out.slice(0, 16));
  await seq.clearHistory();
  const t2 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(filler);
  pre.push(filler.length / ((performance.now() - t2) / 1000));
  console.log(`rep ${r + 1}: decode ${dec.at(-1).toFixed(1)} tok/s (${nNew} tokens), prefill ${pre.at(-1).toFixed(1)} tok/s (${filler.length} tokens), ` +
              `prompt + first token ${(tFirst - t0).toFixed(1)} ms`);
}
console.log(`greedy after ${JSON.stringify(o.prompt)}: ${JSON.stringify(text)}`);
console.log(`median: decode ${median(dec).toFixed(1)} tok/s, prefill ${median(pre).toFixed(1)} tok/s (threads ${threads}); load average after: ${loadAvg()}`);
await model.dispose(); await llama.dispose();
