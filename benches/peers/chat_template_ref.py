#!/usr/bin/env python3
"""usage: chat_template_ref.py MODEL.gguf REFERENCE.json OUT.json

Chat prompts rendered exactly as Hugging Face transformers' `apply_chat_template(messages,
tokenize=False, add_generation_prompt=...)` renders them: its own `render_jinja_template`
(jinja2's sandbox with trim_blocks and lstrip_blocks, loop controls, `raise_exception`),
with the tokenizer's special tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token`)
passed to the template, as `apply_chat_template` passes its `special_tokens_map`.

Two templates:
  smollm2   `tokenizer.chat_template` of MODEL.gguf (SmolLM2-135M-Instruct), the special
            tokens its ids name (tokenizer.ggml.{bos,eos,unknown,padding}_token_id);
  features  a template written here to exercise what chat templates use beyond SmolLM2's:
            indented blocks (lstrip_blocks), newlines after blocks (trim_blocks), `{%- -%}`,
            Python string methods (`.strip()`, `.startswith()`), `namespace`, `continue`,
            filters, `loop.last`, `bos_token`/`eos_token`, and `raise_exception`.

REFERENCE.json is the shared reference's `reference.json`: its case `chat_2plus2` (text, ids,
and the 24 greedy ids and text of transformers on the dequantized weights, which do not stop
at <|im_end|>) is copied into the output, and the rendering here must equal its text.

Writes OUT.json: the versions, and per template its source, special tokens and cases
(`messages`, `add_generation_prompt`, and `text` or `error`). The output is the same on
every run.
"""

import importlib.metadata
import json
import sys

import gguf
import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

FEATURES = """{{ bos_token }}
{%- set ns = namespace(system='', turns=0) %}
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {%- set ns.system = message['content'].strip() %}
        {%- continue %}
    {%- endif %}
    {%- if message['role'] not in ['user', 'assistant'] %}
        {{- raise_exception('Conversation roles must be user or assistant, not ' + message['role']) }}
    {%- endif %}
    {% if ns.turns == 0 and ns.system %}
[SYSTEM] {{ ns.system | upper }}
    {% endif %}
    {% set ns.turns = ns.turns + 1 %}
    {% if message['content'].startswith('/') %}
[COMMAND {{ ns.turns }}] {{ message['content'][1:] | trim }}
    {% else %}
[{{ message['role'] | upper }} {{ ns.turns }}] {{ message['content'].strip() }}
    {% endif %}
    {% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}
    {% if loop.last and not add_generation_prompt %}
(end)
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
[ASSISTANT {{ ns.turns + 1 }}]
{% endif %}"""


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def render(template, specials, messages, add_generation_prompt):
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            **specials,
        )
        return {"text": rendered[0]}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, reference, out = sys.argv[1:]
    reader = gguf.GGUFReader(model)
    template = field(reader, "tokenizer.chat_template")
    tokens = field(reader, "tokenizer.ggml.tokens")
    specials = {}
    for name, key in [
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unknown_token_id"),
        ("pad_token", "padding_token_id"),
    ]:
        i = field(reader, "tokenizer.ggml." + key)
        if i is not None:
            specials[name] = tokens[i]

    ref = json.load(open(reference))
    chat = next(c for c in ref["cases"] if c["name"] == "chat_2plus2")

    conversations = [
        ("chat_2plus2", chat["messages"], True),
        (
            "system_message",
            [
                {"role": "system", "content": "You are a pirate. Answer in one line."},
                {"role": "user", "content": "Where is the treasure?"},
            ],
            True,
        ),
        (
            "multi_turn",
            [
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "The answer is 4."},
                {"role": "user", "content": "  And 3 + 3? Answer\nin words: \u00e9t\u00e9, \u65e5\u672c, \U0001f642  "},
            ],
            True,
        ),
        (
            "history_without_generation_prompt",
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ],
            False,
        ),
        (
            "command_and_bad_role",
            [
                {"role": "user", "content": "/reset   "},
                {"role": "tool", "content": "42"},
            ],
            True,
        ),
    ]
    templates = {
        "smollm2": (template, specials),
        "features": (FEATURES, {"bos_token": "<s>", "eos_token": "</s>"}),
    }
    result = {
        "made_with": {
            "transformers": transformers.__version__,
            "jinja2": jinja2.__version__,
            "gguf": importlib.metadata.version("gguf"),
        },
        "command": "python benches/peers/chat_template_ref.py SmolLM2-135M-Instruct.Q4_1.gguf "
        "reference.json tests/fixtures/smollm2/chat_template.json",
        "reference_chat_2plus2": {
            k: chat[k] for k in ["text", "ids", "greedy_new_ids", "greedy_text"]
        },
        "templates": {},
    }
    for name, (source, sp) in templates.items():
        cases = []
        for case, messages, gen in conversations:
            if name == "smollm2" and case == "command_and_bad_role":
                continue
            cases.append(
                {"name": case, "messages": messages, "add_generation_prompt": gen}
                | render(source, sp, messages, gen)
            )
        result["templates"][name] = {"source": source, "special_tokens": sp, "cases": cases}

    first = result["templates"]["smollm2"]["cases"][0]
    assert first["text"] == chat["text"], (first["text"], chat["text"])
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
