#!/usr/bin/env python3
"""SmolLM2's GGUF with Mistral's control tokens: a copy of models/SmolLM2-135M-Instruct.Q4_1.gguf
whose unused special tokens (ids 7 to 15: <gh_stars>, <issue_start>, ...) are renamed to
Mistral's control tokens ([TOOL_CALLS], [ARGS], [CALL_ID], [INST], ...), still of type CONTROL.
The weights are untouched, so the model still writes English; but a Mistral chat template now
renders its markup as special tokens, as it does for a real Mistral model, where the tool-call
round trips of test_tool_call_templates.py otherwise see that markup as plain text.

Written with the `gguf` package (ggml-org's own GGUF reader and writer, from PyPI): every
key/value pair and tensor is copied as it is, only tokenizer.ggml.tokens changes.

    python3 tests/server/mistral_controls.py SRC DEST
"""
import sys

# id -> Mistral control token (v3/v7 tokenizers' names)
RENAMED = {7: "[TOOL_CALLS]", 8: "[ARGS]", 9: "[CALL_ID]", 10: "[INST]", 11: "[/INST]",
           12: "[AVAILABLE_TOOLS]", 13: "[/AVAILABLE_TOOLS]", 14: "[TOOL_RESULTS]",
           15: "[/TOOL_RESULTS]"}
CONTROL = 3  # gguf.TokenType.CONTROL


def field_value(field):
    """A reader field as the writer takes it: (value, type, sub_type)."""
    import gguf
    vtype = field.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub = field.types[1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data], vtype, sub
        return [field.parts[i].tolist()[0] for i in field.data], vtype, sub
    if vtype == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8"), vtype, None
    return field.parts[field.data[0]].tolist()[0], vtype, None


def write(src, dest):
    import gguf
    reader = gguf.GGUFReader(src)
    arch = field_value(reader.fields["general.architecture"])[0]
    writer = gguf.GGUFWriter(dest, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value, vtype, sub = field_value(field)
        if name == "tokenizer.ggml.tokens":
            types = field_value(reader.fields["tokenizer.ggml.token_type"])[0]
            for i, text in RENAMED.items():
                if types[i] != CONTROL:
                    sys.exit(f"token {i} ({value[i]}) is not a control token in {src}")
                value[i] = text
        writer.add_key_value(name, value, vtype, sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape,
                               t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()


if __name__ == "__main__":
    write(sys.argv[1], sys.argv[2])
