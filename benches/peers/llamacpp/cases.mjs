// usage: node cases.mjs MODEL.gguf REFERENCE.json [--threads 1] [--kv F16|F32] [--flash] [--topk 10] [--out LLAMACPP.json]
// llama.cpp's figures on the cases of a reference.json written by tests/fixtures/smollm2/make_smollm2_ref.py:
// for each case, the reference's own ids are evaluated (no BOS) and llama.cpp gives the mean next-token
// cross-entropy over them (nats), the top-k log-probs at the last position, and as many greedy new ids as
// the reference has (temperature 0, not stopping at <|im_end|>). Also llama.cpp's own tokenization of the
// case's text (special tokens matched for chat cases) against the reference ids. llama.cpp quantizes the
// activations (Q8_1 blocks for Q4_1 weights) and keeps an f16 KV cache, so it is a close peer, not an
// exact one: expect CE within about 1-2%, the same top-1, and greedy ids that may part after a few tokens.
import fs from "node:fs";
import {parseArgs} from "node:util";
import {loadLlama, nextTokenLogProbs, greedy, loadAvg} from "./lib.mjs";

const {values: o, positionals} = parseArgs({allowPositionals: true, options: {
  threads: {type: "string", default: "1"}, kv: {type: "string", default: "F16"}, flash: {type: "boolean", default: false},
  topk: {type: "string", default: "10"}, out: {type: "string"}}});
const [modelPath, refPath] = positionals;
if (!modelPath || !refPath) { console.error("usage: node cases.mjs MODEL.gguf REFERENCE.json [--threads 1] [--out LLAMACPP.json]"); process.exit(2); }
const ref = JSON.parse(fs.readFileSync(refPath, "utf8"));
const {llama, versions} = await loadLlama();
const model = await llama.loadModel({modelPath});
const maxLen = Math.max(...ref.cases.map(c => c.ids.length + c.greedy_new_ids.length));
const ctx = await model.createContext({contextSize: Math.max(1024, maxLen + 8), threads: Number(o.threads), batchSize: 512,
  flashAttention: o.flash, experimentalKvCacheKeyType: o.kv, experimentalKvCacheValueType: o.kv});
const seq = ctx.getSequence();
const cases = [];
for (const c of ref.cases) {
  const own = Array.from(model.tokenize(c.text, c.kind === "chat"));
  await seq.clearHistory();
  const {lp, top} = await nextTokenLogProbs(seq, c.ids, {topAtLast: Number(o.topk)});
  const ce = -lp.reduce((a, b) => a + b, 0) / lp.length;
  await seq.clearHistory();
  const g = await greedy(seq, c.ids, c.greedy_new_ids.length);
  const firstDiff = g.findIndex((t, i) => t !== c.greedy_new_ids[i]);
  const r = {
    name: c.name, n_tokens: c.ids.length,
    tokenization_equal: JSON.stringify(own) === JSON.stringify(c.ids),
    mean_ce_nats: ce, reference_mean_ce_nats: c.mean_ce_nats, ce_rel_diff: (ce - c.mean_ce_nats) / c.mean_ce_nats,
    last_topk_logprob: top, top1: top[0][0], top1_equal: top[0][0] === c.last_topk[0][0],
    greedy_new_ids: g, greedy_text: model.detokenize(g, true), greedy_equal: firstDiff === -1,
    greedy_first_diff_step: firstDiff,
  };
  if (!r.tokenization_equal) r.llamacpp_ids = own;
  cases.push(r);
  console.log(`${c.name}: ${c.ids.length} tokens, tokenization ${r.tokenization_equal ? "equal" : "DIFFERS"}; CE llama.cpp ${ce.toFixed(5)} ` +
              `vs reference ${c.mean_ce_nats.toFixed(5)} (${(100 * r.ce_rel_diff).toFixed(2)}%); top-1 ${r.top1} ${r.top1_equal ? "equal" : "DIFFERS"}; ` +
              `greedy ${r.greedy_equal ? "equal" : "parts at step " + firstDiff}: ${JSON.stringify(r.greedy_text)}`);
}
const res = {
  what: "llama.cpp (node-llama-cpp prebuilt CPU binary) on the reference cases: activations quantized to 8 bits " +
        "(Q8_1/Q8_0 blocks) inside each matrix product, f16 KV cache; a close peer, not an exact reference",
  command: `node cases.mjs ${modelPath.split("/").pop()} ${refPath.split("/").pop()} --threads ${o.threads} --kv ${o.kv}${o.flash ? " --flash" : ""}`,
  versions, threads: Number(o.threads), kv_cache_type: o.kv, flash_attention: o.flash, load_average: loadAvg(),
  conventions: "same ids as the reference (no BOS); mean CE over t = 0..n-2 of -log p(ids[t+1]) from llama.cpp's full " +
               "49,152-way softmax; top-k as [id, log p]; greedy = temperature 0 through llama.cpp's sampler, not stopping at EOG",
  cases,
};
if (o.out) fs.writeFileSync(o.out, JSON.stringify(res, null, 1) + "\n");
await model.dispose(); await llama.dispose();
