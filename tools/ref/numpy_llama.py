"""Independent NumPy reference of the llama forward pass, for emserve's golden outputs.

What it implements: a GGUF `llama` model (written for SmolLM2-135M-Instruct Q4_1) read with the
`gguf` package (GGUFReader; every weight dequantised to f32 with gguf.quants.dequantize, which
is cross-checked on one Q4_1 and one Q8_0 tensor against a decoder of the block layout written
here), and run in f32 with a per-layer KV cache:

    x = token_embd[id]                                   (the Q8_0 row, dequantised)
    per block:  h = rmsnorm(x) * attn_norm               rmsnorm(x) = x / sqrt(mean(x^2) + eps)
                q, k, v = h Wq^T, h Wk^T, h Wv^T          no biases
                RoPE on q and k: pairs (x[2i], x[2i+1]) rotate by pos * base^(-2i/d), d = rope
                  dimension (the GGUF llama convention; the converter already permuted Wq, Wk)
                attention: q head h reads KV head h // (n_head / n_head_kv) (grouped-query),
                  scores q.k / sqrt(head size), causal, softmax, times v; then Wo
                x += attn;  h = rmsnorm(x) * ffn_norm;  x += Wdown (silu(h Wgate^T) * (h Wup^T))
    logits = (rmsnorm(x) * output_norm) token_embd^T    (tied output when output.weight is absent)

Every hyper-parameter (block count, widths, head counts, head size, eps, rope base and
dimension, tensor types and shapes, tied output, absence of biases) is read from the GGUF
metadata and checked, not assumed.

Two activation modes:
  f32  the plain reference: dequantised weights, f32 activations.
  q8   emulates llama.cpp's (and emserve's) quantized matmul: before every matmul with a
       quantized weight each activation row is quantised per 32-element block to int8 with
       d = amax / 127 (kept in f32), q = round-half-to-even(x * 127 / amax) (0 when amax = 0),
       and the matmul uses d * q. For Q4_1 weights (w = d_w q_w + m_w) this equals
       sum_b [d_w d_x sum(q_w q_x) + m_w d_x sum(q_x)] up to float summation order. Norm
       weights are f32 and the embedding lookup reads the Q8_0 row directly (no quantisation).
  q8_ggml  q8 with ggml's storage of the activation block: d rounded to f16 (q still from
       127/amax), and for Q4_1 weights the min term uses s = f16(d * sum(q)) (block_q8_1).
       Not a golden mode: it shows that the gap to llama.cpp's CPU logits is this rounding.
       (llama.cpp also keeps its KV cache in f16 by default; that is not emulated.)
"""
import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

QK = 32  # block size of Q4_0/Q4_1/Q8_0 and of the activation quantisation


def _field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        raise KeyError(f"GGUF metadata lacks {key}")
    return f.contents()


def _decode_q4_1(raw, n_rows, n_cols):
    """Q4_1 block layout decoded here (independent of gguf.quants): f16 d, f16 m, 16 B nibbles."""
    b = raw.reshape(n_rows * n_cols // QK, 20)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = b[:, 4:20]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(n_rows, n_cols)


def _decode_q8_0(raw, n_rows, n_cols):
    """Q8_0 block layout decoded here: f16 d, int8 q[32]."""
    b = raw.reshape(n_rows * n_cols // QK, 34)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = b[:, 2:34].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(n_rows, n_cols)


def quantize_act_q8(x):
    """Emulated activation quantisation: returns d * q per 32-element block of each row."""
    shape = x.shape
    blocks = x.reshape(-1, shape[-1] // QK, QK).astype(np.float32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.rint(blocks * inv)  # np.rint rounds half to even
    d = (amax / np.float32(127)).astype(np.float32)
    return (d * q).astype(np.float32).reshape(shape)


def quantize_act_q8_ggml(x):
    """ggml's Q8_0/Q8_1 activation blocks: returns (d16 * q, s16 - d16 * sum(q) per block)."""
    shape = x.shape
    blocks = x.reshape(-1, shape[-1] // QK, QK).astype(np.float32)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.rint(blocks * inv)
    d = (amax / np.float32(127)).astype(np.float32)
    d16 = d.astype(np.float16).astype(np.float32)
    sq = q.sum(axis=-1, keepdims=True)
    s16 = (d * sq).astype(np.float16).astype(np.float32)
    corr = (s16 - d16 * sq)[..., 0]
    return (d16 * q).astype(np.float32).reshape(shape), corr.reshape(shape[:-1] + (-1,))


class Config:
    def __init__(self, reader):
        arch = _field(reader, "general.architecture")
        if arch != "llama":
            raise ValueError(f"architecture {arch!r}, expected 'llama'")
        p = "llama."
        self.n_layer = int(_field(reader, p + "block_count"))
        self.dim = int(_field(reader, p + "embedding_length"))
        self.ffn = int(_field(reader, p + "feed_forward_length"))
        self.n_head = int(_field(reader, p + "attention.head_count"))
        self.n_head_kv = int(_field(reader, p + "attention.head_count_kv"))
        self.eps = np.float32(_field(reader, p + "attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_field(reader, p + "rope.freq_base"))
        self.head_size = self.dim // self.n_head
        rope_key = p + "rope.dimension_count"
        self.rope_dim = int(_field(reader, rope_key)) if rope_key in reader.fields else self.head_size
        self.n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
        if self.dim % self.n_head or self.n_head % self.n_head_kv:
            raise ValueError("head counts do not divide the width")
        if self.rope_dim != self.head_size:
            raise ValueError(f"partial rope ({self.rope_dim} of {self.head_size}) not implemented")
        if (p + "rope.scaling.type") in reader.fields:
            raise ValueError("rope scaling not implemented")
        self.group = self.n_head // self.n_head_kv

    def __str__(self):
        return (f"llama: {self.n_layer} blocks, dim {self.dim}, ffn {self.ffn}, heads {self.n_head}"
                f"/{self.n_head_kv} kv (group {self.group}), head {self.head_size}, eps {self.eps:g},"
                f" rope base {self.rope_base:g} dim {self.rope_dim}, vocab {self.n_vocab}")


class Model:
    MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")

    def __init__(self, path, log=print):
        reader = gguf.GGUFReader(path)
        self.cfg = c = Config(reader)
        self.tensors = {t.name: t for t in reader.tensors}
        self.types = {}
        self.acc64 = False  # True: matmuls accumulate in f64 (a summation-order perturbation)
        self.quantized = set()  # ids of dequantised matrices stored quantized in the file
        self.mins = {}  # id(dequantised Q4_1 matrix) -> its block mins (rows, cols / 32)
        for name in self.tensors:
            if name.endswith(".bias"):
                raise ValueError(f"bias tensor {name} not implemented")
        known = {"token_embd.weight", "output_norm.weight", "output.weight"}
        known |= {f"blk.{i}.{m}.weight" for i in range(c.n_layer)
                  for m in self.MATRICES + ("attn_norm", "ffn_norm")}
        extra = set(self.tensors) - known
        if extra:
            raise ValueError(f"unexpected tensors: {sorted(extra)[:5]}")
        hkv = c.n_head_kv * c.head_size
        shapes = {"attn_q": (c.dim, c.dim), "attn_k": (hkv, c.dim), "attn_v": (hkv, c.dim),
                  "attn_output": (c.dim, c.dim), "ffn_gate": (c.ffn, c.dim),
                  "ffn_up": (c.ffn, c.dim), "ffn_down": (c.dim, c.ffn)}
        self.tok_embd = self._load("token_embd.weight", (c.n_vocab, c.dim))
        self.tied = "output.weight" not in self.tensors
        self.output = self.tok_embd if self.tied else self._load("output.weight", (c.n_vocab, c.dim))
        self.output_norm = self._load("output_norm.weight", (c.dim,), want_f32=True)
        self.layers = []
        for i in range(c.n_layer):
            L = {m: self._load(f"blk.{i}.{m}.weight", shapes[m]) for m in self.MATRICES}
            L["attn_norm"] = self._load(f"blk.{i}.attn_norm.weight", (c.dim,), want_f32=True)
            L["ffn_norm"] = self._load(f"blk.{i}.ffn_norm.weight", (c.dim,), want_f32=True)
            self.layers.append(L)
        self._self_check()
        # RoPE tables: freq_i = base^(-2i/d), i = 0 .. d/2-1
        self.inv_freq = (c.rope_base ** (-np.arange(0, c.rope_dim, 2, dtype=np.float64) / c.rope_dim))
        log(f"{c}; tied output: {self.tied}; types: "
            + ", ".join(f"{k}x{v}" for k, v in sorted(self._type_counts().items())))

    def _type_counts(self):
        out = {}
        for t in self.types.values():
            out[t] = out.get(t, 0) + 1
        return out

    def _load(self, name, shape, want_f32=False):
        t = self.tensors.get(name)
        if t is None:
            raise KeyError(f"tensor {name} missing")
        qt = QT(t.tensor_type)
        self.types[name] = qt.name
        if want_f32 and qt != QT.F32:
            raise ValueError(f"{name} is {qt.name}, expected F32")
        # GGUF shape is (ne0 = in, ne1 = out); NumPy rows are ne1
        if tuple(int(s) for s in reversed(t.shape)) != tuple(shape) and not (
                len(shape) == 1 and int(t.shape[0]) == shape[0]):
            raise ValueError(f"{name} has shape {list(t.shape)}, expected {shape[::-1]}")
        w = gguf.quants.dequantize(t.data, qt).astype(np.float32)
        w = np.ascontiguousarray(w.reshape(shape))
        if qt not in (QT.F32, QT.F16):
            self.quantized.add(id(w))
        if qt == QT.Q4_1:  # block mins, for the q8_ggml mode's min term
            b = np.asarray(t.data).reshape(-1, 20)
            self.mins[id(w)] = b[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(
                shape[0], -1)
        return w

    def _self_check(self):
        """gguf.quants vs the block layouts decoded here, on one tensor of each quant type."""
        decoders = {QT.Q4_1: _decode_q4_1, QT.Q8_0: _decode_q8_0}
        checked = set()
        for name, t in self.tensors.items():
            qt = QT(t.tensor_type)
            if qt in decoders and qt not in checked:
                rows, cols = int(t.shape[1]), int(t.shape[0])
                mine = decoders[qt](np.asarray(t.data).reshape(-1), rows, cols)
                theirs = gguf.quants.dequantize(t.data, qt).reshape(rows, cols)
                if not np.array_equal(mine, theirs):
                    raise ValueError(f"dequantisation mismatch on {name}")
                checked.add(qt)

    # ---- forward ---------------------------------------------------------------------------
    def new_cache(self):
        c = self.cfg
        return {"pos": 0, "k": [np.zeros((c.n_head_kv, 0, c.head_size), np.float32)] * c.n_layer,
                "v": [np.zeros((c.n_head_kv, 0, c.head_size), np.float32)] * c.n_layer}

    def _rmsnorm(self, x, g):
        ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.cfg.eps)).astype(np.float32) * g

    def _matmul(self, x, w, mode):
        if id(w) not in self.quantized:  # f32/f16 weights: no activation quantisation
            return self._dot(x, w)
        if mode == "q8":
            x = quantize_act_q8(x)
        elif mode == "q8_ggml":
            x, corr = quantize_act_q8_ggml(x)
            m = self.mins.get(id(w))
            if m is not None:
                return self._dot(x, w) + corr @ m.T
        return self._dot(x, w)

    def _dot(self, x, w):
        if self.acc64:
            return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)
        return x @ w.T

    def _rope(self, x, pos):
        """x: (heads, T, head_size); rotate pairs (2i, 2i+1) by pos * inv_freq[i]."""
        ang = np.outer(pos, self.inv_freq)                      # (T, d/2)
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def _attention(self, i, h, cache, pos, mode):
        c, L = self.cfg, self.layers[i]
        T = h.shape[0]
        q = self._matmul(h, L["attn_q"], mode).reshape(T, c.n_head, c.head_size).transpose(1, 0, 2)
        k = self._matmul(h, L["attn_k"], mode).reshape(T, c.n_head_kv, c.head_size).transpose(1, 0, 2)
        v = self._matmul(h, L["attn_v"], mode).reshape(T, c.n_head_kv, c.head_size).transpose(1, 0, 2)
        q, k = self._rope(q, pos), self._rope(k, pos)
        K = np.concatenate([cache["k"][i], k], axis=1)
        V = np.concatenate([cache["v"][i], v], axis=1)
        cache["k"][i], cache["v"][i] = K, V
        n_ctx = K.shape[1]
        kv_of_q = np.arange(c.n_head) // c.group               # q head h reads kv head h // group
        scores = np.einsum("htd,hsd->hts", q, K[kv_of_q]) / np.float32(np.sqrt(c.head_size))
        mask = np.arange(n_ctx)[None, :] > pos[:, None]         # causal: key position <= query
        scores = np.where(mask[None], np.float32(-np.inf), scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,hsd->htd", p.astype(np.float32), V[kv_of_q])
        o = o.transpose(1, 0, 2).reshape(T, c.dim)
        return self._matmul(o, L["attn_output"], mode)

    def _ffn(self, i, h, mode):
        L = self.layers[i]
        g = self._matmul(h, L["ffn_gate"], mode)
        u = self._matmul(h, L["ffn_up"], mode)
        a = (g / (np.float32(1) + np.exp(-g))) * u               # silu(gate) * up
        return self._matmul(a.astype(np.float32), L["ffn_down"], mode)

    def forward(self, ids, cache, mode="f32", all_logits=False):
        """Runs ids at positions cache['pos'].. and returns the last position's logits (f32)."""
        if mode not in ("f32", "q8", "q8_ggml"):
            raise ValueError(f"mode {mode!r}")
        ids = np.asarray(ids, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= self.cfg.n_vocab:
            raise ValueError("token id out of range")
        pos = cache["pos"] + np.arange(len(ids))
        x = self.tok_embd[ids].astype(np.float32)
        for i, L in enumerate(self.layers):
            x = x + self._attention(i, self._rmsnorm(x, L["attn_norm"]), cache, pos, mode)
            x = x + self._ffn(i, self._rmsnorm(x, L["ffn_norm"]), mode)
        cache["pos"] += len(ids)
        h = self._rmsnorm(x if all_logits else x[-1:], self.output_norm)
        logits = self._matmul(h, self.output, mode)
        return logits if all_logits else logits[0]


def greedy(model, prompt_ids, n, mode, stop_id=None, log=None):
    """Prefill, then n greedy steps. Returns (prompt logits, ids, per-step top1-top2 margins)."""
    cache = model.new_cache()
    logits = model.forward(prompt_ids, cache, mode)
    first = logits.copy()
    ids, margins = [], []
    for step in range(n):
        top2 = np.argsort(-logits, kind="stable")[:2]
        margins.append(float(logits[top2[0]] - logits[top2[1]]))
        nxt = int(top2[0])
        ids.append(nxt)
        if log:
            log(step, nxt, margins[-1])
        if stop_id is not None and nxt == stop_id:
            break
        if step + 1 < n:
            logits = model.forward([nxt], cache, mode)
    return first, ids, margins
