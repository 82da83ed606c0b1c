#!/usr/bin/python3
"""Reference renderings of the chat templates tern knows (src/tok/chat.c).

Each template is the official Jinja text from the model's tokenizer_config.json
(SmolLM2's also checked against the chat template in its GGUF when the model is
at hand), rendered by transformers' own renderer (render_jinja_template: the
sandboxed jinja2 environment with trim_blocks / lstrip_blocks and
raise_exception that apply_chat_template uses) for several conversations, with
and without add_generation_prompt.

Writes tests/fixtures/chat_templates.txt, one record per line, fields separated
by TAB, strings as lowercase hex of their UTF-8 bytes ("" for an empty string):
  T  NAME  hex(jinja)                      a template text and the id it is
  D  NAME  hex(jinja)                      another text that must detect as NAME
                                           ("none": must not be recognised)
  R  NAME  add_gen(0/1)  hex(bos)  hex(eos)  N  role1 hex(content1) ... roleN hex(contentN)  ok|err  hex(text)
     ok: the rendered prompt; err: the template's exception message

Run from the repository root: /usr/bin/python3 tests/ref/chat_ref.py [model.gguf]
"""
import os
import sys

from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "chat_templates.txt")

# ---------------------------------------------------------------- template texts
# Verbatim (after JSON decoding) from each model's tokenizer_config.json.

TEMPLATES = {
    # teknium/OpenHermes-2.5-Mistral-7B: plain ChatML
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # HuggingFaceTB/SmolLM2-135M-Instruct (also its GGUF's tokenizer.chat_template)
    "smollm2": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    # meta-llama/Llama-2-7b-chat-hf ('\\n' here: a backslash-n escape inside the Jinja string literals)
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    # mistralai/Mistral-7B-Instruct-v0.2 (and Mixtral-8x7B-Instruct-v0.1)
    "mistral": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    # HuggingFaceH4/zephyr-7b-beta (real newlines between the tags)
    "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
    # google/gemma-7b-it (gemma-2b-it, gemma-2-*-it alike)
    "gemma": "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
}

# Other published spellings that must be recognised (or, "none", refused).
VARIANTS = [
    # Llama-3 as llama.cpp's tests quote it (no add_generation_prompt test)
    ("llama3", "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"),
    # gemma-7b-it's first revision (no bos_token)
    ("gemma", TEMPLATES["gemma"].replace("{{ bos_token }}", "", 1)),
    # Phi-3: <|user|> / <|assistant|> but <|end|> ends turns: not zephyr
    ("none", "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    # Alpaca-style: nothing tern knows
    ("none", "{% for message in messages %}{{ '### ' + message['role'] + ':\n' + message['content'] + '\n\n' }}{% endfor %}"),
]

SPECIALS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama2": ("<s>", "</s>"),
    "mistral": ("<s>", "</s>"),
    "zephyr": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
}

S = "system"
U = "user"
A = "assistant"
CONVERSATIONS = [
    [(U, "Hi")],
    [(S, "You are a helpful assistant."), (U, "Hello!")],
    [(U, "My name is Ana."), (A, "  Nice to meet you, Ana!  "), (U, "What is my name?")],
    [(S, " Be brief.\n"), (U, "Hello"), (A, "Hi there"), (U, "Who are you"), (A, "   I am an assistant   "),
     (U, "Another question")],
    [(U, "\u00c7a va ? \u65e5\u672c\u8a9e \U0001F642\u00a0"), (A, "\u3000r\u00e9ponse\u2003\u2028"),
     (U, "\t tabs and\nnewlines \n")],
    [(U, "Ends with the assistant"), (A, "Done.")],
    [(S, "sys only")],
    [(A, "assistant first"), (U, "then user")],
    [(U, "one"), (U, "two")],
    [(S, "s1"), (U, "u"), (S, "s2"), (U, "u2")],
]


def hx(s):
    return s.encode("utf-8").hex()


def render(tmpl, conv, add_gen, bos, eos):
    msgs = [{"role": r, "content": c} for r, c in conv]
    try:
        out, _ = render_jinja_template(conversations=[msgs], chat_template=tmpl, add_generation_prompt=add_gen,
                                       bos_token=bos, eos_token=eos)
        return "ok", out[0]
    except Exception as e:  # the template's raise_exception (jinja2 TemplateError)
        return "err", str(e)


def check_gguf(path):
    try:
        from gguf import GGUFReader
    except ImportError:
        return
    if not os.path.exists(path):
        print(f"note: {path} missing; SmolLM2's template not compared with its GGUF")
        return
    f = GGUFReader(path).fields["tokenizer.chat_template"]
    text = bytes(f.parts[f.data[0]]).decode()
    assert text == TEMPLATES["smollm2"], "SmolLM2's GGUF template differs from the one quoted here"
    print(f"SmolLM2's template matches {path}")


def main():
    check_gguf(sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/tern/SmolLM2-135M-Instruct.Q4_1.gguf"))
    lines = []
    for name, tmpl in TEMPLATES.items():
        lines.append(f"T\t{name}\t{hx(tmpl)}")
    for name, tmpl in VARIANTS:
        lines.append(f"D\t{name}\t{hx(tmpl)}")
    n_ok = n_err = 0
    for name, tmpl in TEMPLATES.items():
        bos, eos = SPECIALS[name]
        for conv in CONVERSATIONS:
            for add_gen in (0, 1):
                kind, text = render(tmpl, conv, bool(add_gen), bos, eos)
                n_ok += kind == "ok"
                n_err += kind == "err"
                fields = ["R", name, str(add_gen), hx(bos), hx(eos), str(len(conv))]
                for r, c in conv:
                    fields += [r, hx(c)]
                fields += [kind, hx(text)]
                lines.append("\t".join(fields))
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(TEMPLATES)} templates, {len(VARIANTS)} variants, {n_ok} renderings, {n_err} errors")


if __name__ == "__main__":
    main()
