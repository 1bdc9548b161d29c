#!/usr/bin/env python3
"""Plain-PyTorch reference implementations of four Hugging Face Hub architectures.

`transformers` is not installable here, so the parity generator (generate.py, group
`huggingface`) and hf_logits.py use these instead. Each class reproduces the eager
("attn_implementation=eager") maths of transformers' modeling file and keeps its module tree,
so that `state_dict()` has exactly the names of a Hub `model.safetensors`:

- BertForSequenceClassification   transformers/models/bert/modeling_bert.py
- DistilBertForSequenceClassification   transformers/models/distilbert/modeling_distilbert.py
- GPT2LMHeadModel   transformers/models/gpt2/modeling_gpt2.py
- LlamaForCausalLM   transformers/models/llama/modeling_llama.py

Config defaults are those of BertConfig, DistilBertConfig, GPT2Config and LlamaConfig
(configuration_<arch>.py) and PretrainedConfig (num_labels from id2label, default 2;
tie_word_embeddings default true, false for Llama). Buffers that transformers registers
(position_ids, GPT-2's attn.bias / attn.masked_bias, Llama's rotary inv_freq) are computed on the
fly instead, so they are not in the state_dict. A tied lm_head is the embedding matrix itself
(F.linear with wte / embed_tokens): no lm_head.weight key, as in Hub files.

Every model's forward is `forward(input_ids, attention_mask=None, token_type_ids=None)` and
returns logits: [N, num_labels] for sequence classification, [N, T, vocab_size] for causal LM.
The computation runs in the parameters' dtype: where transformers upcasts to float32 (Llama's
RMSNorm and attention softmax, its RoPE tables) a float64 model stays in float64, so that the
generator's float64 shadow run computes the same function more exactly.

Run `/usr/bin/python3 test/parity/huggingface.py` for the self-test.
"""
import math
from collections import OrderedDict
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHITECTURES = {
    "BertForSequenceClassification": "sequence-classification",
    "DistilBertForSequenceClassification": "sequence-classification",
    "GPT2LMHeadModel": "causal-lm",
    "LlamaForCausalLM": "causal-lm",
}

# --------------------------------------------------------------------------- configs
# (default, aliases): configuration_<arch>.py's __init__ defaults; aliases are attribute_map.

BERT_DEFAULTS = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
    position_embedding_type="absolute", classifier_dropout=None, is_decoder=False, add_cross_attention=False,
)
DISTILBERT_DEFAULTS = dict(
    vocab_size=30522, max_position_embeddings=512, sinusoidal_pos_embds=False, n_layers=6, n_heads=12, dim=768,
    hidden_dim=4 * 768, dropout=0.1, attention_dropout=0.1, activation="gelu", initializer_range=0.02,
    qa_dropout=0.1, seq_classif_dropout=0.2, pad_token_id=0,
)
DISTILBERT_ALIASES = dict(hidden_size="dim", num_attention_heads="n_heads", num_hidden_layers="n_layers")
GPT2_DEFAULTS = dict(
    vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
    activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, layer_norm_epsilon=1e-5,
    initializer_range=0.02, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
    reorder_and_upcast_attn=False, add_cross_attention=False, tie_word_embeddings=True,
)
GPT2_ALIASES = dict(hidden_size="n_embd", max_position_embeddings="n_positions", num_attention_heads="n_head",
                    num_hidden_layers="n_layer")
LLAMA_DEFAULTS = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=None, hidden_act="silu", max_position_embeddings=2048, initializer_range=0.02,
    rms_norm_eps=1e-6, pad_token_id=None, tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None,
    attention_bias=False, attention_dropout=0.0, mlp_bias=False, head_dim=None, pretraining_tp=1,
)


def num_labels_of(config):
    """PretrainedConfig: num_labels = len(id2label) when id2label is given, else num_labels, else 2."""
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def sequence_classification_loss(config, labels):
    """The loss *ForSequenceClassification.forward (BertForSequenceClassification, DistilBert...) computes
    for `labels`, as a request's training.loss: config.problem_type, or when it is None "regression" for
    num_labels 1, "single_label_classification" for torch.long / torch.int labels and
    "multi_label_classification" otherwise; then MSELoss, CrossEntropyLoss or BCEWithLogitsLoss.
    PretrainedConfig raises a ValueError for any other problem_type."""
    problem = config.get("problem_type")
    if problem is not None and problem not in PROBLEM_TYPES:
        raise ValueError("problem_type %r is not one of %s" % (problem, PROBLEM_TYPES))
    if problem is None:
        if num_labels_of(config) == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    return {"regression": {"type": "mse"}, "single_label_classification": {"type": "cross_entropy"},
            "multi_label_classification": {"type": "bce_with_logits"}}[problem]


def resolve_config(config):
    """The config.json dict with the architecture's defaults filled in, as a namespace.
    Raises ValueError for an unsupported architecture or option."""
    arch = (config.get("architectures") or [None])[0]
    if arch not in ARCHITECTURES:
        raise ValueError("unsupported architecture %r (supported: %s)" % (arch, ", ".join(ARCHITECTURES)))
    defaults, aliases = {
        "BertForSequenceClassification": (BERT_DEFAULTS, {}),
        "DistilBertForSequenceClassification": (DISTILBERT_DEFAULTS, DISTILBERT_ALIASES),
        "GPT2LMHeadModel": (GPT2_DEFAULTS, GPT2_ALIASES),
        "LlamaForCausalLM": (LLAMA_DEFAULTS, {}),
    }[arch]
    c = dict(defaults)
    for k, v in config.items():
        c[aliases.get(k, k)] = v
    c["architecture"] = arch
    c["task"] = ARCHITECTURES[arch]
    if c["task"] == "sequence-classification":
        c["num_labels"] = num_labels_of(config)
    if arch == "BertForSequenceClassification":
        if c["position_embedding_type"] != "absolute":
            raise ValueError("position_embedding_type %r is not supported" % c["position_embedding_type"])
        if c["is_decoder"] or c["add_cross_attention"]:
            raise ValueError("is_decoder / add_cross_attention are not supported")
    if arch == "DistilBertForSequenceClassification" and c["sinusoidal_pos_embds"]:
        raise ValueError("sinusoidal_pos_embds is not supported")
    if arch == "GPT2LMHeadModel" and c["add_cross_attention"]:
        raise ValueError("add_cross_attention is not supported")
    if arch == "LlamaForCausalLM":
        if c["num_key_value_heads"] is None:
            c["num_key_value_heads"] = c["num_attention_heads"]
        if c["head_dim"] is None:
            c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
        # transformers >= 5 moves rope_theta into rope_parameters; rope_scaling "default" is plain RoPE
        rp = c.get("rope_parameters") or {}
        if "rope_theta" in rp:
            c["rope_theta"] = rp["rope_theta"]
        for scaling in (c["rope_scaling"], rp or None):
            if scaling is not None and scaling.get("rope_type", scaling.get("type", "default")) != "default":
                raise ValueError("RoPE scaling %r is not supported" % (scaling,))
        if c["num_attention_heads"] % c["num_key_value_heads"]:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    return SimpleNamespace(**c)


# --------------------------------------------------------------------------- shared pieces

class NewGELU(nn.Module):
    """transformers.activations.NewGELUActivation ("gelu_new"):
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def activation(name):
    """transformers.activations.ACT2FN for the names these configs use. ReLU is an nn.ReLU module so
    that the generator's kink hooks see its input."""
    if name == "gelu":
        return nn.GELU()  # GELUActivation: the exact erf form
    if name == "gelu_new":
        return NewGELU()
    if name == "gelu_pytorch_tanh":
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError("activation %r is not supported" % name)


def extended_attention_mask(attention_mask, dtype):
    """ModuleUtilsMixin.get_extended_attention_mask / GPT2Model: [N, T] (1 = token) ->
    [N, 1, 1, T] added to the scores: (1 - mask) * finfo(dtype).min."""
    m = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - m) * torch.finfo(dtype).min


def ones_mask(input_ids, dtype):
    return torch.ones(input_ids.shape, dtype=dtype)


# --------------------------------------------------------------------------- BERT

class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        T = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(torch.arange(T)[None, :])
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        if c.hidden_size % c.num_attention_heads:
            raise ValueError("hidden_size is not a multiple of num_attention_heads")
        self.num_attention_heads = c.num_attention_heads
        self.attention_head_size = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.attention_probs_dropout_prob)

    def heads(self, x):
        return x.view(x.shape[0], x.shape[1], self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, h, ext_mask):
        q, k, v = self.heads(self.query(h)), self.heads(self.key(h)), self.heads(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        probs = self.dropout(F.softmax(scores + ext_mask, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.shape[0], ctx.shape[1], -1)


class BertSelfOutput(nn.Module):
    """dense, dropout, LayerNorm(x + residual): post-LN (also BertOutput with intermediate_size in)."""

    def __init__(self, c, d_in):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.hidden_size)

    def forward(self, h, ext_mask):
        return self.output(self.self(h, ext_mask), h)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = activation(c.hidden_act)

    def forward(self, h):
        return self.intermediate_act_fn(self.dense(h))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.intermediate_size)

    def forward(self, h, ext_mask):
        a = self.attention(h, ext_mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c.num_hidden_layers)])

    def forward(self, h, ext_mask):
        for layer in self.layer:
            h = layer(h, ext_mask)
        return h


class BertPooler(nn.Module):
    """tanh(dense(hidden state of token 0))."""

    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, h):
        return self.activation(self.dense(h[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c)


class BertForSequenceClassification(nn.Module):
    """bert -> pooler -> dropout(classifier_dropout, else hidden_dropout_prob) -> classifier."""

    def __init__(self, config):
        super().__init__()
        c = self.config = resolve_config(config) if isinstance(config, dict) else config
        self.bert = BertModel(c)
        p = c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(c.hidden_size, c.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        dtype = self.classifier.weight.dtype
        if attention_mask is None:
            attention_mask = ones_mask(input_ids, dtype)
        h = self.bert.embeddings(input_ids, token_type_ids)
        h = self.bert.encoder(h, extended_attention_mask(attention_mask, dtype))
        return self.classifier(self.dropout(self.bert.pooler(h)))


# --------------------------------------------------------------------------- DistilBERT

class DistilBertEmbeddings(nn.Module):
    """word + position embeddings, LayerNorm(eps=1e-12, fixed in the modeling file), dropout."""

    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.dim)
        self.LayerNorm = nn.LayerNorm(c.dim, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, input_ids):
        T = input_ids.shape[1]
        e = self.word_embeddings(input_ids) + self.position_embeddings(torch.arange(T)[None, :])
        return self.dropout(self.LayerNorm(e))


class MultiHeadSelfAttention(nn.Module):
    """q scaled by 1/sqrt(dim_per_head) before q k^T; padded keys masked_fill'ed with finfo.min."""

    def __init__(self, c):
        super().__init__()
        if c.dim % c.n_heads:
            raise ValueError("dim is not a multiple of n_heads")
        self.n_heads = c.n_heads
        self.dim = c.dim
        self.dropout = nn.Dropout(c.attention_dropout)
        self.q_lin = nn.Linear(c.dim, c.dim)
        self.k_lin = nn.Linear(c.dim, c.dim)
        self.v_lin = nn.Linear(c.dim, c.dim)
        self.out_lin = nn.Linear(c.dim, c.dim)

    def forward(self, x, mask):
        bs, T, _ = x.shape
        dph = self.dim // self.n_heads
        shape = lambda t: t.view(bs, -1, self.n_heads, dph).transpose(1, 2)
        q, k, v = shape(self.q_lin(x)), shape(self.k_lin(x)), shape(self.v_lin(x))
        q = q / math.sqrt(dph)
        scores = torch.matmul(q, k.transpose(2, 3))
        hidden = (mask == 0).view(bs, 1, 1, T).expand_as(scores)
        scores = scores.masked_fill(hidden, torch.tensor(torch.finfo(scores.dtype).min))
        weights = self.dropout(F.softmax(scores, dim=-1))
        ctx = torch.matmul(weights, v).transpose(1, 2).contiguous().view(bs, -1, self.n_heads * dph)
        return self.out_lin(ctx)


class FFN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dropout = nn.Dropout(c.dropout)
        self.lin1 = nn.Linear(c.dim, c.hidden_dim)
        self.lin2 = nn.Linear(c.hidden_dim, c.dim)
        self.activation = activation(c.activation)

    def forward(self, x):
        return self.dropout(self.lin2(self.activation(self.lin1(x))))


class TransformerBlock(nn.Module):
    """post-LN: sa_layer_norm(attention(x) + x), output_layer_norm(ffn(h) + h), both eps 1e-12."""

    def __init__(self, c):
        super().__init__()
        self.attention = MultiHeadSelfAttention(c)
        self.sa_layer_norm = nn.LayerNorm(c.dim, eps=1e-12)
        self.ffn = FFN(c)
        self.output_layer_norm = nn.LayerNorm(c.dim, eps=1e-12)

    def forward(self, x, mask):
        sa = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.ffn(sa) + sa)


class DistilBertTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([TransformerBlock(c) for _ in range(c.n_layers)])

    def forward(self, x, mask):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class DistilBertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = DistilBertEmbeddings(c)
        self.transformer = DistilBertTransformer(c)


class DistilBertForSequenceClassification(nn.Module):
    """token 0's hidden state -> pre_classifier -> ReLU -> dropout(seq_classif_dropout) -> classifier."""

    def __init__(self, config):
        super().__init__()
        c = self.config = resolve_config(config) if isinstance(config, dict) else config
        self.distilbert = DistilBertModel(c)
        self.pre_classifier = nn.Linear(c.dim, c.dim)
        self.classifier = nn.Linear(c.dim, c.num_labels)
        self.dropout = nn.Dropout(c.seq_classif_dropout)
        self.relu = nn.ReLU()  # nn.ReLU()(x) inline in transformers; a module here for the kink hooks

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = ones_mask(input_ids, self.classifier.weight.dtype)
        h = self.distilbert.transformer(self.distilbert.embeddings(input_ids), attention_mask)
        return self.classifier(self.dropout(self.relu(self.pre_classifier(h[:, 0]))))


# --------------------------------------------------------------------------- GPT-2

class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: weight [nx, nf] = [in, out]; y = x @ W + b (addmm)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return out.view(x.shape[:-1] + (self.nf,))


class GPT2Attention(nn.Module):
    def __init__(self, c, layer_idx):
        super().__init__()
        self.embed_dim = c.n_embd
        self.num_heads = c.n_head
        self.head_dim = c.n_embd // c.n_head
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError("n_embd is not a multiple of n_head")
        self.scale_attn_weights = c.scale_attn_weights
        self.scale_attn_by_inverse_layer_idx = c.scale_attn_by_inverse_layer_idx
        self.layer_idx = layer_idx
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(c.attn_pdrop)
        self.resid_dropout = nn.Dropout(c.resid_pdrop)

    def heads(self, x):
        return x.view(x.shape[:-1] + (self.num_heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, h, ext_mask):
        q, k, v = self.c_attn(h).split(self.embed_dim, dim=2)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        w = torch.matmul(q, k.transpose(-1, -2))
        if self.scale_attn_weights:
            w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        if self.scale_attn_by_inverse_layer_idx:
            w = w / float(self.layer_idx + 1)
        T = q.shape[-2]
        causal = torch.tril(torch.ones((T, T), dtype=torch.bool)).view(1, 1, T, T)  # the `attn.bias` buffer
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        w = self.attn_dropout(F.softmax(w + ext_mask, dim=-1))
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        a = a.view(a.shape[:-2] + (self.embed_dim,))
        return self.resid_dropout(self.c_proj(a))


class GPT2MLP(nn.Module):
    def __init__(self, c, inner):
        super().__init__()
        self.c_fc = Conv1D(inner, c.n_embd)
        self.c_proj = Conv1D(c.n_embd, inner)
        self.act = activation(c.activation_function)
        self.dropout = nn.Dropout(c.resid_pdrop)

    def forward(self, h):
        return self.dropout(self.c_proj(self.act(self.c_fc(h))))


class GPT2Block(nn.Module):
    """pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x)); inner = n_inner or 4 n_embd."""

    def __init__(self, c, layer_idx):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.attn = GPT2Attention(c, layer_idx)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.mlp = GPT2MLP(c, c.n_inner if c.n_inner is not None else 4 * c.n_embd)

    def forward(self, h, ext_mask):
        h = self.attn(self.ln_1(h), ext_mask) + h
        return h + self.mlp(self.ln_2(h))


class GPT2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.n_positions, c.n_embd)
        self.drop = nn.Dropout(c.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(c, i) for i in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)

    def forward(self, input_ids, attention_mask, token_type_ids):
        T = input_ids.shape[1]
        h = self.wte(input_ids) + self.wpe(torch.arange(T)[None, :])
        if token_type_ids is not None:
            h = h + self.wte(token_type_ids)  # GPT-2 embeds token types with wte
        h = self.drop(h)
        ext = extended_attention_mask(attention_mask, h.dtype)
        for block in self.h:
            h = block(h, ext)
        return self.ln_f(h)


class GPT2LMHeadModel(nn.Module):
    """transformer -> lm_head, tied to transformer.wte (tie_word_embeddings, default true): then no
    lm_head.weight exists, as in Hub files."""

    def __init__(self, config):
        super().__init__()
        c = self.config = resolve_config(config) if isinstance(config, dict) else config
        self.transformer = GPT2Model(c)
        self.tied = bool(c.tie_word_embeddings)
        if not self.tied:
            self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)

    def output_embeddings(self):
        return self.transformer.wte.weight if self.tied else self.lm_head.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = ones_mask(input_ids, self.transformer.wte.weight.dtype)
        return F.linear(self.transformer(input_ids, attention_mask, token_type_ids), self.output_embeddings())


# --------------------------------------------------------------------------- Llama

def upcast(dtype):
    """transformers upcasts to float32 here; a float64 model stays float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class LlamaRMSNorm(nn.Module):
    """weight * (x * rsqrt(mean(x^2) + eps)), the normalisation in float32."""

    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, h):
        dtype = h.dtype
        h = h.to(upcast(dtype))
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * h.to(dtype)


def rope_cos_sin(head_dim, theta, T, dtype):
    """LlamaRotaryEmbedding (rope_type "default"): inv_freq = 1 / theta^(arange(0, d, 2) / d),
    freqs = positions x inv_freq, emb = cat(freqs, freqs); cos and sin in float32 -> [1, T, d]."""
    ct = upcast(dtype)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(ct) / head_dim))
    freqs = torch.arange(T, dtype=torch.int64).to(ct)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[None], emb.sin().to(dtype)[None]


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x, n_rep):
    """[N, kv_heads, T, d] -> [N, kv_heads * n_rep, T, d]: query head h reads kv head h // n_rep."""
    b, kvh, T, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, T, d).reshape(b, kvh * n_rep, T, d)


def llama_mask(attention_mask, dtype):
    """The eager causal mask: min_dtype above the diagonal and on padded keys (once), else 0 ->
    [N, 1, T, T]."""
    N, T = attention_mask.shape
    min_dtype = torch.finfo(dtype).min
    causal = torch.triu(torch.full((T, T), min_dtype, dtype=dtype), diagonal=1)[None, None].expand(N, 1, T, T).clone()
    padding = causal.eq(0.0) & attention_mask[:, None, None, :].eq(0)
    return causal.masked_fill(padding, min_dtype)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.head_dim = c.head_dim
        self.num_heads = c.num_attention_heads
        self.num_key_value_heads = c.num_key_value_heads
        self.num_key_value_groups = c.num_attention_heads // c.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        self.attention_dropout = c.attention_dropout
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=c.attention_bias)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=c.attention_bias)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=c.attention_bias)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=c.attention_bias)

    def forward(self, h, mask, cos, sin):
        N, T, _ = h.shape
        q = self.q_proj(h).view(N, T, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(N, T, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(N, T, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = repeat_kv(k, self.num_key_value_groups), repeat_kv(v, self.num_key_value_groups)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling + mask
        w = F.softmax(w, dim=-1, dtype=upcast(q.dtype)).to(q.dtype)
        w = F.dropout(w, p=self.attention_dropout, training=self.training)
        a = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(N, T, -1)
        return self.o_proj(a)


class LlamaMLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)
        self.act_fn = activation(c.hidden_act)

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, h, mask, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), mask, cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, input_ids, attention_mask):
        h = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(self.c.head_dim, self.c.rope_theta, input_ids.shape[1], h.dtype)
        mask = llama_mask(attention_mask, h.dtype)
        for layer in self.layers:
            h = layer(h, mask, cos, sin)
        return self.norm(h)


class LlamaForCausalLM(nn.Module):
    """model -> lm_head; tie_word_embeddings (default false) makes lm_head model.embed_tokens."""

    def __init__(self, config):
        super().__init__()
        c = self.config = resolve_config(config) if isinstance(config, dict) else config
        self.model = LlamaModel(c)
        self.tied = bool(c.tie_word_embeddings)
        if not self.tied:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def output_embeddings(self):
        return self.model.embed_tokens.weight if self.tied else self.lm_head.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = ones_mask(input_ids, self.model.embed_tokens.weight.dtype)
        return F.linear(self.model(input_ids, attention_mask), self.output_embeddings())


MODELS = {
    "BertForSequenceClassification": BertForSequenceClassification,
    "DistilBertForSequenceClassification": DistilBertForSequenceClassification,
    "GPT2LMHeadModel": GPT2LMHeadModel,
    "LlamaForCausalLM": LlamaForCausalLM,
}


def build(config):
    """The reference model for a config.json dict (architectures[0] picks the class)."""
    c = resolve_config(config)
    return MODELS[c.architecture](c)


# --------------------------------------------------------------------------- init, loss

def init_weights(model, seed):
    """torch.manual_seed(seed), then transformers' _init_weights applied once to every module in
    post-order (nn.Module.apply): Linear / Conv1D weights ~ N(0, initializer_range) with zero
    biases, Embedding ~ N(0, initializer_range) with the padding_idx row zeroed, LayerNorm 1 / 0,
    RMSNorm 1; GPT-2 then redraws each c_proj.weight ~ N(0, initializer_range / sqrt(2 n_layer))
    (GPT2PreTrainedModel._init_weights). The rules are transformers'; the random stream is not
    (transformers initialises nested models more than once), so fixtures store the weights."""
    c = model.config
    std = c.initializer_range

    def fn(m):
        if isinstance(m, (nn.Linear, Conv1D)):
            m.weight.data.normal_(mean=0.0, std=std)
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.Embedding):
            m.weight.data.normal_(mean=0.0, std=std)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            m.bias.data.zero_()
            m.weight.data.fill_(1.0)
        elif isinstance(m, LlamaRMSNorm):
            m.weight.data.fill_(1.0)
        if isinstance(m, (GPT2Attention, GPT2MLP)):
            m.c_proj.weight.data.normal_(mean=0.0, std=std / math.sqrt(2 * c.n_layer))

    torch.manual_seed(seed)
    model.apply(fn)
    return model


def causal_labels(input_ids, attention_mask):
    """Labels for a causal LM without `y`: input_ids with padding (attention_mask 0) set to -100."""
    return input_ids.masked_fill(attention_mask == 0, -100)


def causal_lm_loss(logits, labels):
    """ForCausalLMLoss: the logit at t predicts labels[t + 1]; mean cross-entropy over every label
    that is not -100."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


def hub_names(config):
    """The parameter names of a Hub model.safetensors for this config, in module order."""
    return list(build(config).state_dict().keys())


# --------------------------------------------------------------------------- self-test

def tiny_configs():
    bert = dict(architectures=["BertForSequenceClassification"], model_type="bert", vocab_size=20, hidden_size=8,
                num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, max_position_embeddings=10,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.3,
                id2label={"0": "a", "1": "b", "2": "c"})
    distil = dict(architectures=["DistilBertForSequenceClassification"], model_type="distilbert", vocab_size=20,
                  dim=8, n_layers=2, n_heads=2, hidden_dim=16, max_position_embeddings=10, dropout=0.0,
                  attention_dropout=0.0, seq_classif_dropout=0.0, initializer_range=0.3)
    gpt2 = dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=20, n_embd=8, n_layer=2, n_head=2,
                n_positions=10, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.3)
    llama = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=20, hidden_size=16,
                 intermediate_size=24, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=10, pad_token_id=0, tie_word_embeddings=True, initializer_range=0.3)
    return bert, distil, gpt2, llama


def cross_check_encoder_layers(bert, distil, gpt2, ok):
    """BERT's and DistilBERT's layers are nn.TransformerEncoderLayer post-norm (GELU erf); a GPT-2
    block is nn.TransformerEncoderLayer pre-norm with the tanh GELU and a causal mask; in_proj =
    cat(q, k, v) (Conv1D weights transposed). Compares on padded rows, in float64."""
    good = True
    torch.manual_seed(1)
    N, T = 3, 6
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3])
    x = torch.randn(N, T, 8, dtype=torch.float64)

    def torch_layer(norm_first, act, eps):
        return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=act, layer_norm_eps=eps, batch_first=True,
                                          norm_first=norm_first).double().eval()

    def real(y):
        return torch.cat([y[i, :int(mask[i].sum())] for i in range(N)])

    # BERT
    b = init_weights(build(bert), 5).double()
    L = b.bert.encoder.layer[0]
    t = torch_layer(False, "gelu", 1e-12)
    with torch.no_grad():
        s = L.attention.self
        t.self_attn.in_proj_weight.copy_(torch.cat([s.query.weight, s.key.weight, s.value.weight]))
        t.self_attn.in_proj_bias.copy_(torch.cat([s.query.bias, s.key.bias, s.value.bias]))
        t.self_attn.out_proj.weight.copy_(L.attention.output.dense.weight)
        t.self_attn.out_proj.bias.copy_(L.attention.output.dense.bias)
        t.norm1.load_state_dict(L.attention.output.LayerNorm.state_dict())
        t.linear1.load_state_dict(L.intermediate.dense.state_dict())
        t.linear2.load_state_dict(L.output.dense.state_dict())
        t.norm2.load_state_dict(L.output.LayerNorm.state_dict())
        ours = L(x, extended_attention_mask(mask, torch.float64))
        theirs = t(x, src_key_padding_mask=(mask == 0))
    good &= ok(torch.allclose(real(ours), real(theirs), atol=1e-10), "BertLayer == nn.TransformerEncoderLayer (post-norm, gelu)")

    # DistilBERT
    d = init_weights(build(distil), 6).double()
    L = d.distilbert.transformer.layer[0]
    t = torch_layer(False, "gelu", 1e-12)
    with torch.no_grad():
        a = L.attention
        t.self_attn.in_proj_weight.copy_(torch.cat([a.q_lin.weight, a.k_lin.weight, a.v_lin.weight]))
        t.self_attn.in_proj_bias.copy_(torch.cat([a.q_lin.bias, a.k_lin.bias, a.v_lin.bias]))
        t.self_attn.out_proj.load_state_dict(a.out_lin.state_dict())
        t.norm1.load_state_dict(L.sa_layer_norm.state_dict())
        t.linear1.load_state_dict(L.ffn.lin1.state_dict())
        t.linear2.load_state_dict(L.ffn.lin2.state_dict())
        t.norm2.load_state_dict(L.output_layer_norm.state_dict())
        ours = L(x, mask)
        theirs = t(x, src_key_padding_mask=(mask == 0))
    good &= ok(torch.allclose(real(ours), real(theirs), atol=1e-10), "DistilBERT TransformerBlock == nn.TransformerEncoderLayer")

    # GPT-2 (n_inner 16 so that the feed-forward sizes agree)
    g = init_weights(build(dict(gpt2, n_inner=16)), 7).double()
    B = g.transformer.h[0]
    t = torch_layer(True, lambda v: F.gelu(v, approximate="tanh"), 1e-5)
    with torch.no_grad():
        t.self_attn.in_proj_weight.copy_(B.attn.c_attn.weight.t())
        t.self_attn.in_proj_bias.copy_(B.attn.c_attn.bias)
        t.self_attn.out_proj.weight.copy_(B.attn.c_proj.weight.t())
        t.self_attn.out_proj.bias.copy_(B.attn.c_proj.bias)
        t.norm1.load_state_dict(B.ln_1.state_dict())
        t.linear1.weight.copy_(B.mlp.c_fc.weight.t())
        t.linear1.bias.copy_(B.mlp.c_fc.bias)
        t.linear2.weight.copy_(B.mlp.c_proj.weight.t())
        t.linear2.bias.copy_(B.mlp.c_proj.bias)
        t.norm2.load_state_dict(B.ln_2.state_dict())
        causal = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float64), diagonal=1)
        ours = B(x, extended_attention_mask(mask, torch.float64))
        theirs = t(x, src_mask=causal, src_key_padding_mask=(mask == 0))
    good &= ok(torch.allclose(real(ours), real(theirs), atol=1e-10), "GPT2Block == nn.TransformerEncoderLayer (pre-norm, tanh gelu, causal)")
    return good


def selftest():
    torch.manual_seed(0)
    ok = lambda cond, msg: print(("ok   " if cond else "FAIL ") + msg) or cond
    good = True
    bert, distil, gpt2, llama = tiny_configs()

    # Conv1D is nn.Linear with the transposed weight
    conv = Conv1D(5, 3)
    conv.weight.data.normal_()
    conv.bias.data.normal_()
    x = torch.randn(2, 4, 3)
    good &= ok(torch.allclose(conv(x), F.linear(x, conv.weight.t(), conv.bias), atol=1e-6),
               "GPT-2 Conv1D(x) == x @ W + b == F.linear(x, W^T, b)")

    # gelu_new against torch's tanh GELU (the same formula)
    z = torch.linspace(-5, 5, 101, dtype=torch.float64)
    good &= ok(torch.allclose(NewGELU()(z), F.gelu(z, approximate="tanh"), atol=1e-12), "gelu_new == gelu(approximate='tanh')")

    # RoPE: <R_m q, R_n k> depends only on m - n
    cos, sin = rope_cos_sin(8, 10000.0, 10, torch.float64)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    rot = lambda t, p: apply_rotary_pos_emb(t, t, cos[:, p:p + 1], sin[:, p:p + 1])[0]
    d1 = (rot(q, 5) * rot(k, 2)).sum()
    d2 = (rot(q, 7) * rot(k, 4)).sum()
    good &= ok(abs(float(d1 - d2)) < 1e-12 and abs(float((rot(q, 0) - q).abs().max())) == 0,
               "RoPE: q_m . k_n depends only on m - n, position 0 is the identity")
    good &= ok(abs(float(rot(q, 3).norm() - q.norm())) < 1e-12, "RoPE preserves the norm")

    # repeat_kv: query head h reads kv head h // n_rep
    kv = torch.randn(2, 2, 3, 4)
    r = repeat_kv(kv, 3)
    good &= ok(all(torch.equal(r[:, h], kv[:, h // 3]) for h in range(6)), "repeat_kv maps query head h to kv head h // n_rep")

    # RMSNorm formula
    n = LlamaRMSNorm(6, 1e-6)
    n.weight.data.normal_()
    x = torch.randn(3, 6)
    ref = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * n.weight
    good &= ok(torch.allclose(n(x), ref, atol=1e-6), "RMSNorm = x / sqrt(mean(x^2) + eps) * w")

    expected_names = {
        "BertForSequenceClassification": [
            "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
            "bert.embeddings.LayerNorm.bias"] + [
            "bert.encoder.layer.%d.%s" % (i, s) for i in range(2) for s in (
                "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
                "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
                "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
                "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
                "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias")] + [
            "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"],
        "DistilBertForSequenceClassification": [
            "distilbert.embeddings.word_embeddings.weight", "distilbert.embeddings.position_embeddings.weight",
            "distilbert.embeddings.LayerNorm.weight", "distilbert.embeddings.LayerNorm.bias"] + [
            "distilbert.transformer.layer.%d.%s" % (i, s) for i in range(2) for s in (
                "attention.q_lin.weight", "attention.q_lin.bias", "attention.k_lin.weight", "attention.k_lin.bias",
                "attention.v_lin.weight", "attention.v_lin.bias", "attention.out_lin.weight", "attention.out_lin.bias",
                "sa_layer_norm.weight", "sa_layer_norm.bias", "ffn.lin1.weight", "ffn.lin1.bias", "ffn.lin2.weight",
                "ffn.lin2.bias", "output_layer_norm.weight", "output_layer_norm.bias")] + [
            "pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"],
        "GPT2LMHeadModel": ["transformer.wte.weight", "transformer.wpe.weight"] + [
            "transformer.h.%d.%s" % (i, s) for i in range(2) for s in (
                "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                "mlp.c_proj.weight", "mlp.c_proj.bias")] + ["transformer.ln_f.weight", "transformer.ln_f.bias"],
        "LlamaForCausalLM": ["model.embed_tokens.weight"] + [
            "model.layers.%d.%s" % (i, s) for i in range(2) for s in (
                "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                "input_layernorm.weight", "post_attention_layernorm.weight")] + ["model.norm.weight"],
    }
    for cfg in (bert, distil, gpt2, llama):
        arch = cfg["architectures"][0]
        m = init_weights(build(cfg), 3)
        names = list(m.state_dict().keys())
        good &= ok(names == expected_names[arch], "%s: state_dict keys are the Hub names" % arch)
        m2 = build(cfg)
        m2.load_state_dict(m.state_dict(), strict=True)
        good &= ok(len(names) == len(list(m.parameters())), "%s: one state_dict entry per parameter" % arch)

        T, N = 7, 3
        ids = torch.randint(1, 20, (N, T))
        mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
        tt = torch.tensor([[0] * 4 + [1] * 3, [0] * 2 + [1] * 2 + [0] * 3, [0] * 7]) if arch.startswith("Bert") else None
        out = m(ids, mask, tt)
        # padded tokens change nothing in the real positions (the mask works)
        ids2 = ids.masked_fill(mask == 0, 5)
        out2 = m(ids2, mask, tt)
        if ARCHITECTURES[arch] == "causal-lm":
            same = all(torch.allclose(out[i, :int(mask[i].sum())], out2[i, :int(mask[i].sum())], atol=1e-6) for i in range(N))
            # causal: a later token does not change earlier logits
            ids3 = ids.clone()
            ids3[0, 5] = (ids3[0, 5] % 19) + 1
            causal_ok = torch.allclose(m(ids3, mask)[0, :5], m(ids, mask)[0, :5], atol=1e-6) and \
                not torch.allclose(m(ids3, mask)[0, 5], m(ids, mask)[0, 5])
            good &= ok(causal_ok, "%s: causal (changing token 5 leaves logits 0..4 unchanged)" % arch)
            good &= ok(out.shape == (N, T, 20), "%s: logits [N, T, vocab]" % arch)
            lab = causal_labels(ids, mask)
            manual = sum(F.cross_entropy(out[i, t], lab[i, t + 1], reduction="sum") for i in range(N) for t in range(T - 1)
                         if lab[i, t + 1] != -100) / int((lab[:, 1:] != -100).sum())
            good &= ok(abs(float(causal_lm_loss(out, lab) - manual)) < 1e-6, "%s: shifted causal-LM loss" % arch)
        else:
            same = torch.allclose(out, out2, atol=1e-6)
            good &= ok(out.shape == (N, 3 if arch.startswith("Bert") else 2), "%s: logits [N, num_labels]" % arch)
        good &= ok(same, "%s: padded tokens do not change the real outputs" % arch)
        # finfo.min gives the same as dropping the padded tokens altogether
        short = m(ids[1:2, :4], None, None if tt is None else tt[1:2, :4])
        full = out[1:2] if ARCHITECTURES[arch] == "sequence-classification" else out[1:2, :4]
        good &= ok(torch.allclose(short, full, atol=1e-5), "%s: padding masked == padding removed" % arch)

    # an independent implementation: torch's nn.TransformerEncoderLayer with the same weights
    good &= cross_check_encoder_layers(bert, distil, gpt2, ok)

    # tied lm_head is one parameter: no lm_head.weight, and the gradient reaches the embedding
    m = init_weights(build(gpt2), 1)
    ids = torch.randint(1, 20, (2, 5))
    F.cross_entropy(m(ids).reshape(-1, 20), ids.reshape(-1)).backward()
    good &= ok("lm_head.weight" not in m.state_dict() and m.transformer.wte.weight.grad is not None,
               "GPT-2: lm_head tied to wte (one Parameter, absent from the state_dict)")
    # padding_idx: no gradient into the row from the embedding, but a tied head still trains it
    lm = init_weights(build(llama), 1)
    good &= ok(float(lm.model.embed_tokens.weight[0].abs().max()) == 0.0, "Llama: padding row zeroed at init")
    lm(torch.tensor([[3, 4, 0, 0]]), torch.tensor([[1, 1, 0, 0]])).sum().backward()
    good &= ok(float(lm.model.embed_tokens.weight.grad[0].abs().max()) > 0, "Llama tied: the padding row gets the lm_head gradient")
    untied = dict(llama, tie_word_embeddings=False)
    lu = init_weights(build(untied), 1)
    lu(torch.tensor([[3, 4, 0, 0]]), torch.tensor([[1, 1, 0, 0]])).sum().backward()
    good &= ok(float(lu.model.embed_tokens.weight.grad[0].abs().max()) == 0 and "lm_head.weight" in lu.state_dict(),
               "Llama untied: lm_head.weight present, no gradient into the padding row")
    # GPT-2 special init: c_proj std = initializer_range / sqrt(2 n_layer)
    big = dict(gpt2, n_embd=64, n_head=4, vocab_size=50, initializer_range=0.5)
    g = init_weights(build(big), 0)
    s1 = float(g.transformer.h[0].mlp.c_proj.weight.std())
    s2 = float(g.transformer.h[0].mlp.c_fc.weight.std())
    good &= ok(abs(s1 - 0.25) < 0.02 and abs(s2 - 0.5) < 0.03, "GPT-2 init: c_proj std %.3f (0.25), c_fc std %.3f (0.5)" % (s1, s2))
    try:
        resolve_config(dict(architectures=["T5ForConditionalGeneration"]))
        good &= ok(False, "unsupported architecture raises")
    except ValueError as e:
        good &= ok("BertForSequenceClassification" in str(e), "unsupported architecture raises, listing the supported ones")
    print("self-test " + ("passed" if good else "FAILED"))
    return good


if __name__ == "__main__":
    import sys
    sys.exit(0 if selftest() else 1)
