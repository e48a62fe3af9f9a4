"""Bytes a decode step reads from a llama GGUF: every weight matrix once (norms are negligible
but counted), the tied output counted once more when there is no output.weight (the table is
read for the logits, besides one embedding row), and the KV cache per token of context."""
import gguf


def model_bytes(path):
    r = gguf.GGUFReader(path)
    names = {t.name: t for t in r.tensors}
    weights = sum(int(t.n_bytes) for t in r.tensors if t.name != "token_embd.weight")
    weights += int(names["token_embd.weight"].n_bytes)  # the output projection (tied or not)
    f = {k: r.fields[k] for k in r.fields}
    def u32(k):
        v = f[k]
        return int(v.parts[v.data[0]][0])
    layers, kvh = u32("llama.block_count"), u32("llama.attention.head_count_kv")
    hd = u32("llama.embedding_length") // u32("llama.attention.head_count")
    return {"weights": weights, "kv_f32_per_tok": 2 * 4 * hd * kvh * layers}


if __name__ == "__main__":
    import sys
    print(model_bytes(sys.argv[1]))
