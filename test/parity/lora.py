#!/usr/bin/env python3
"""Plain-PyTorch reference of PEFT's LoRA (peft.LoraConfig / get_peft_model / save_pretrained /
merge_and_unload), for the parity generator (generate.py, group `lora`).

`peft` is not installable here. This file follows PEFT's published source, release v0.20.0
(github huggingface/peft, tag v0.20.0), in its own code:

- src/peft/tuners/lora/layer.py    LoraLayer.update_layer / reset_lora_parameters (init, scaling),
                                   Linear.forward / get_delta_weight, Embedding.forward / _embed /
                                   get_delta_weight, dispatch_default (Conv1D -> fan_in_fan_out True)
- src/peft/tuners/lora/model.py    LoraModel._create_and_replace, _prepare_adapter_config
- src/peft/tuners/tuners_utils.py  check_target_module_exists, _maybe_include_all_linear_layers,
                                   inject_adapter, _mark_only_adapters_as_trainable, _get_in_out_features,
                                   _unload_and_optionally_merge
- src/peft/utils/other.py          _set_trainable / ModulesToSaveWrapper (modules_to_save)
- src/peft/utils/save_and_load.py  get_peft_model_state_dict (the adapter_model.safetensors names)
- src/peft/utils/constants.py      TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, SEQ_CLS_HEAD_NAMES,
                                   EMBEDDING_LAYER_NAMES
- src/peft/tuners/lora/config.py, src/peft/config.py   LoraConfig fields (adapter_config.json)
- src/peft/peft_model.py           PeftModelForSequenceClassification (classifier/score added to
                                   modules_to_save), PeftModel.save_pretrained (inference_mode true,
                                   auto_mapping for non-transformers models)

The module tree is PEFT's, so `state_dict()` has PEFT's in-memory names
(`base_model.model.<module>.base_layer.weight`, `.lora_A.default.weight`, `.modules_to_save.default.*`),
and `peft_state_dict()` turns them into the names of adapter_model.safetensors. One deliberate
difference: with bias "lora_only", v0.20.0's get_peft_model_state_dict looks for `<module>.bias` and so
drops the trained `<module>.base_layer.bias` (huggingface/peft issue #3306); PEFT main (PR #3490, after
v0.20.0) saves it as `base_model.model.<module>.base_layer.bias`, and so does this reference (any PEFT
version loads that key, since load_state_dict passes keys without "lora_" through unchanged).

Run `/usr/bin/python3 test/parity/lora.py --selftest` for the self-test.
"""
import copy
import math
import re
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

if __package__ in (None, ""):
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import huggingface as hf  # noqa: E402

ADAPTER = "default"  # PEFT's adapter name; it is in the in-memory names, not in the saved ones
PEFT_VERSION = "0.20.0"  # the release whose LoraConfig fields adapter_config.json carries

# constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING (v0.20.0), for the model types that
# huggingface.py builds and the Workers AI bases. There is no "distilbert" entry: PEFT raises
# "Please specify `target_modules` in `peft_config`" for DistilBERT without target_modules.
DEFAULT_TARGET_MODULES = {
    "bert": ["query", "value"],
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
}
SEQ_CLS_HEAD_NAMES = ["score", "classifier"]  # constants.py: heads "all-linear" leaves out (SEQ_CLS)
CLASSIFIER_MODULE_NAMES = ["classifier", "score"]  # PeftModelForSequenceClassification adds these
EMBEDDING_LAYER_NAMES = ["embed_tokens", "lm_head"]  # constants.py (save_embedding_layers="auto")
INCLUDE_LINEAR_LAYERS_SHORTHAND = "all-linear"
TASK_TYPES = {"sequence-classification": "SEQ_CLS", "causal-lm": "CAUSAL_LM"}
# Workers AI serves LoRA adapters of these bases and wants model_type in adapter_config.json (an
# edgetune addition, issue 13; PEFT >= 0.14 ignores unknown keys when it loads a config)
WORKERS_AI_MODEL_TYPES = ("llama", "mistral", "gemma")
BIAS_MODES = ("none", "all", "lora_only")


class LoraError(ValueError):
    """A request PEFT refuses (the engine answers these with a 422 naming the field)."""

    def __init__(self, field, message):
        super().__init__("%s: %s" % (field, message))
        self.field = field


# --------------------------------------------------------------------------- layers

def in_out_features(module):
    """tuners_utils._get_in_out_features: nn.Linear (in, out); GPT-2 Conv1D weight [in, out];
    nn.Embedding (num_embeddings, embedding_dim)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, hf.Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    if isinstance(module, nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    raise TypeError(type(module).__name__)


def scaling_of(r, lora_alpha, use_rslora):
    """update_layer: lora_alpha / sqrt(r) with rsLoRA, else lora_alpha / r (a Python float; the
    forward multiplies a tensor by it, so a float32 run uses it rounded to float32)."""
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


class LoraLinear(nn.Module):
    """lora.Linear over nn.Linear or GPT-2's Conv1D (fan_in_fan_out: Conv1D stores [in, out]).
    lora_A = nn.Linear(in, r, bias=False) [r, in], lora_B = nn.Linear(r, out, bias=False) [out, r]
    for both; forward = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling. Submodules in PEFT's
    order (base_layer, lora_dropout, lora_A, lora_B), so parameters and state_dict keys come in
    PEFT's order."""

    def __init__(self, base_layer, r, lora_alpha, lora_dropout, use_rslora, fan_in_fan_out):
        super().__init__()
        self.base_layer = base_layer
        self.lora_dropout = nn.ModuleDict({ADAPTER: nn.Dropout(p=lora_dropout) if lora_dropout > 0.0 else nn.Identity()})
        self.in_features, self.out_features = in_out_features(base_layer)
        self.r = r
        # the random stream of update_layer: both nn.Linear constructors draw (kaiming_uniform_ of their
        # weights), then reset_lora_parameters draws A again and zeroes B
        self.lora_A = nn.ModuleDict({ADAPTER: nn.Linear(self.in_features, r, bias=False)})
        self.lora_B = nn.ModuleDict({ADAPTER: nn.Linear(r, self.out_features, bias=False)})
        self.scaling = scaling_of(r, lora_alpha, use_rslora)
        self.fan_in_fan_out = fan_in_fan_out
        nn.init.kaiming_uniform_(self.lora_A[ADAPTER].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B[ADAPTER].weight)

    @property
    def weight(self):  # BaseTunerLayer.weight: the base layer's
        return self.base_layer.weight

    @property
    def bias(self):  # BaseTunerLayer.bias
        return self.base_layer.bias

    def forward(self, x):
        result = self.base_layer(x)
        a, b, drop = self.lora_A[ADAPTER], self.lora_B[ADAPTER], self.lora_dropout[ADAPTER]
        return result + b(a(drop(x))) * self.scaling

    def delta_weight(self):
        """get_delta_weight: transpose(B @ A, fan_in_fan_out) * scaling, in the base weight's layout."""
        d = self.lora_B[ADAPTER].weight @ self.lora_A[ADAPTER].weight
        return (d.T if self.fan_in_fan_out else d) * self.scaling


class LoraEmbedding(nn.Module):
    """lora.Embedding: lora_embedding_A [r, num_embeddings] (zeros), lora_embedding_B [embedding_dim, r]
    (normal_); forward = base_layer(x) + (F.embedding(x, A^T, padding_idx, ...) @ B^T) * scaling, i.e.
    s * onehot(x) @ A^T @ B^T (no dropout on this path). F.embedding with the base layer's padding_idx:
    column padding_idx of A gets no gradient."""

    def __init__(self, base_layer, r, lora_alpha, lora_dropout, use_rslora):
        super().__init__()
        self.base_layer = base_layer
        self.lora_dropout = nn.ModuleDict({ADAPTER: nn.Dropout(p=lora_dropout) if lora_dropout > 0.0 else nn.Identity()})
        self.in_features, self.out_features = in_out_features(base_layer)
        self.r = r
        # update_layer draws randn for both, then reset_lora_parameters zeroes A and redraws B
        weight_A = torch.randn((r, self.in_features))
        weight_B = torch.randn((self.out_features, r))
        self.lora_embedding_A = nn.ParameterDict({ADAPTER: nn.Parameter(weight_A)})
        self.lora_embedding_B = nn.ParameterDict({ADAPTER: nn.Parameter(weight_B)})
        self.scaling = scaling_of(r, lora_alpha, use_rslora)
        nn.init.zeros_(self.lora_embedding_A[ADAPTER])
        nn.init.normal_(self.lora_embedding_B[ADAPTER])

    @property
    def weight(self):
        return self.base_layer.weight

    @property
    def padding_idx(self):
        return self.base_layer.padding_idx

    def forward(self, x):
        base = self.base_layer
        result = base(x)
        after_A = F.embedding(x, self.lora_embedding_A[ADAPTER].T, padding_idx=base.padding_idx, max_norm=base.max_norm,
                              norm_type=base.norm_type, scale_grad_by_freq=base.scale_grad_by_freq, sparse=base.sparse)
        return result + (after_A @ self.lora_embedding_B[ADAPTER].T) * self.scaling

    def delta_weight(self):
        """get_delta_weight: transpose(B @ A, True) * scaling -> [num_embeddings, embedding_dim]."""
        return (self.lora_embedding_B[ADAPTER] @ self.lora_embedding_A[ADAPTER]).T * self.scaling


LORA_LAYERS = (LoraLinear, LoraEmbedding)


class ModulesToSave(nn.Module):
    """ModulesToSaveWrapper: the original module, frozen, and a deep copy under modules_to_save.default
    that the forward uses and that trains in full."""

    def __init__(self, module):
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict({ADAPTER: copy.deepcopy(module)})
        self.original_module.requires_grad_(False)
        self.modules_to_save[ADAPTER].requires_grad_(True)

    @property
    def active(self):
        return self.modules_to_save[ADAPTER]

    @property
    def weight(self):
        return self.active.weight

    @property
    def bias(self):
        return self.active.bias

    def forward(self, *args, **kwargs):
        return self.active(*args, **kwargs)


class LoraModel(nn.Module):
    """LoraModel: holds the base model as `model`."""

    def __init__(self, model):
        super().__init__()
        self.model = model


class PeftModel(nn.Module):
    """PeftModel (or PeftModelForSequenceClassification / ForCausalLM): the base model at
    base_model.model, so every in-memory name starts with "base_model.model.". The forward is the
    base model's (edgetune's calling convention: (x, mask) or (input_ids, mask, token_type_ids))."""

    def __init__(self, model, config):
        super().__init__()
        self.base_model = LoraModel(model)
        self.peft_config = config

    def forward(self, *args, **kwargs):
        return self.base_model.model(*args, **kwargs)


# --------------------------------------------------------------------------- config and matching

def model_type_of(model):
    """config.json's model_type of a huggingface.py model, None for a layers model (not a transformers model)."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) if cfg is not None else None


def is_transformers_model(model):
    return isinstance(model, tuple(hf.MODELS.values()))


def output_embedding_module_name(model):
    """PreTrainedModel.get_output_embeddings(): the untied lm_head of a causal LM. A tied lm_head is
    not a module in huggingface.py (F.linear with the embedding); transformers has an nn.Linear
    lm_head sharing the weight, which "all-linear" leaves out as well, so the outcome is the same."""
    if isinstance(model, (hf.GPT2LMHeadModel, hf.LlamaForCausalLM)) and not model.tied:
        return "lm_head"
    return None


def input_embedding_module_name(model):
    if isinstance(model, hf.BertForSequenceClassification):
        return "bert.embeddings.word_embeddings"
    if isinstance(model, hf.DistilBertForSequenceClassification):
        return "distilbert.embeddings.word_embeddings"
    if isinstance(model, hf.GPT2LMHeadModel):
        return "transformer.wte"
    if isinstance(model, hf.LlamaForCausalLM):
        return "model.embed_tokens"
    return None


def resolve_config(adapter, model, task):
    """The LoraConfig PEFT ends up with for this request, as a dict of adapter_config.json's LoRA
    fields, plus the model facts: get_peft_model's mutations included (target_modules from the
    model type's default, "all-linear" expanded to module names, SEQ_CLS's classifier/score added to
    modules_to_save). fan_in_fan_out is filled in while injecting."""
    if adapter.get("type", "lora") != "lora":
        raise LoraError("adapter.type", "only 'lora' is supported")
    r = adapter.get("r", 8)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise LoraError("adapter.r", "`r` should be a positive integer value but the value passed is %r" % (r,))
    bias = adapter.get("bias", "none")
    if bias not in BIAS_MODES:
        raise LoraError("adapter.bias", "must be one of %s" % ", ".join(BIAS_MODES))
    lora_dropout = adapter.get("lora_dropout", 0.0)
    modules_to_save = adapter.get("modules_to_save")
    modules_to_save = list(modules_to_save) if modules_to_save is not None else None
    task_type = TASK_TYPES.get(task) if task else None
    if task_type == "SEQ_CLS":
        # PeftModelForSequenceClassification.__init__: None -> ["classifier", "score"], else extend
        # (duplicates included, and they are what save_pretrained writes)
        modules_to_save = CLASSIFIER_MODULE_NAMES[:] if modules_to_save is None else modules_to_save + CLASSIFIER_MODULE_NAMES
    target_modules = adapter.get("target_modules")
    model_type = model_type_of(model)
    if target_modules is None:
        default = DEFAULT_TARGET_MODULES.get(model_type)
        if default is None:
            raise LoraError("adapter.target_modules", "Please specify `target_modules` in `peft_config` (no default "
                            "for %s)" % (model_type or "a layers model"))
        target_modules = set(default)
    elif isinstance(target_modules, str):
        if target_modules.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND:
            target_modules = all_linear_names(model, task_type)
    else:
        target_modules = set(target_modules)  # LoraConfig.__post_init__
    return OrderedDict(r=r, lora_alpha=adapter.get("lora_alpha", 8), lora_dropout=lora_dropout,
                       target_modules=target_modules, use_rslora=bool(adapter.get("use_rslora", False)),
                       modules_to_save=modules_to_save, bias=bias, fan_in_fan_out=False, task_type=task_type,
                       model_type=model_type, transformers=is_transformers_model(model))


def all_linear_names(model, task_type):
    """_maybe_include_all_linear_layers: the names of every nn.Linear / Conv1D module, less the output
    head of a transformers model: get_output_embeddings() (a causal LM's lm_head), or for SEQ_CLS
    without one the first of SEQ_CLS_HEAD_NAMES that is an attribute of the model. A layers model is
    not a PreTrainedModel: nothing is left out, its last linear layer included."""
    names = set(n for n, m in model.named_modules() if isinstance(m, (nn.Linear, hf.Conv1D)))
    if is_transformers_model(model):
        out = output_embedding_module_name(model)
        if out is not None:
            names.discard(out)
        elif task_type == "SEQ_CLS":
            for head in SEQ_CLS_HEAD_NAMES:
                if getattr(model, head, None) is not None:
                    names.discard(head)
                    break
    return names


def excluded_by_modules_to_save(config, key):
    """check_target_module_exists: a module matched by modules_to_save never gets LoRA (a regex match on
    whole name segments; the entry itself is used as a regex, unescaped, as PEFT does)."""
    mts = config["modules_to_save"]
    return bool(mts) and any(re.match(r"(^|.*\.)%s($|\..*)" % m, key) for m in mts)


def target_matches(config, key):
    """check_target_module_exists: a string is a regex fullmatch; a list entry matches the full name or
    any name ending in "." + entry."""
    if excluded_by_modules_to_save(config, key):
        return False
    tm = config["target_modules"]
    if isinstance(tm, str):
        return re.fullmatch(tm, key) is not None
    return key in tm or any(key.endswith("." + t) for t in tm)


def get_submodules(model, key):
    parent = model.get_submodule(key.rsplit(".", 1)[0]) if "." in key else model
    return parent, key.rsplit(".", 1)[-1]


def get_lora_model(model, adapter, task=None, seed=None):
    """get_peft_model(model, LoraConfig(**adapter)) for a huggingface.py model or a generate.py layers
    model. `seed`: torch.manual_seed(seed) right before the adapter layers are built, so that lora_A
    draws PEFT's random stream (see LoraLinear). Raises LoraError for what PEFT refuses."""
    config = resolve_config(adapter, model, task)
    if seed is not None:
        torch.manual_seed(seed)
    named = list(model.named_modules())
    targeted, unsupported = [], []
    for key, module in named:
        if not key or not target_matches(config, key):
            continue
        r, alpha, drop, rs = config["r"], config["lora_alpha"], config["lora_dropout"], config["use_rslora"]
        # dispatch_default: Embedding, then nn.Linear (fan_in_fan_out forced False), then Conv1D (forced
        # True); the forced value stays in the config, so the saved one is that of the last layer adapted
        if isinstance(module, nn.Embedding):
            new = LoraEmbedding(module, r, alpha, drop, rs)
        elif isinstance(module, nn.Linear):
            config["fan_in_fan_out"] = False
            new = LoraLinear(module, r, alpha, drop, rs, False)
        elif isinstance(module, hf.Conv1D):
            config["fan_in_fan_out"] = True
            new = LoraLinear(module, r, alpha, drop, rs, True)
        else:
            unsupported.append("%s (%s)" % (key, type(module).__name__))
            continue
        parent, name = get_submodules(model, key)
        setattr(parent, name, new)
        targeted.append(key)
    if unsupported:
        raise LoraError("adapter.target_modules", "LoRA applies to Linear, GPT-2 Conv1D and Embedding modules; "
                        "these matched modules are not: %s" % ", ".join(unsupported))
    if not targeted:
        raise LoraError("adapter.target_modules", "Target modules %s not found in the base model; its modules are: %s"
                        % (sorted(config["target_modules"]) if not isinstance(config["target_modules"], str)
                           else config["target_modules"], ", ".join(k for k, _ in named if k)))
    config["targeted"] = targeted

    # _mark_only_adapters_as_trainable
    for n, p in model.named_parameters():
        if "lora_" not in n:
            p.requires_grad_(False)
    if config["bias"] == "all":
        for n, p in model.named_parameters():
            if "bias" in n:
                p.requires_grad_(True)
    elif config["bias"] == "lora_only":
        for m in model.modules():
            if isinstance(m, LoraLinear) and m.base_layer.bias is not None:
                m.base_layer.bias.requires_grad_(True)

    # set_additional_trainable_modules -> _set_trainable: a plain suffix match (no dot: "classifier"
    # also wraps DistilBERT's "pre_classifier"), over the names after LoRA was injected
    saved = []
    if config["modules_to_save"]:
        for key in [k for k, _ in model.named_modules(remove_duplicate=False)]:
            if key and any(key.endswith(t) for t in config["modules_to_save"]):
                parent, name = get_submodules(model, key)
                grandparent = get_submodules(model, key.rsplit(".", 1)[0])[0] if "." in key else None
                if isinstance(grandparent, LORA_LAYERS):
                    raise LoraError("adapter.modules_to_save", "%r is inside a LoRA layer" % key)
                setattr(parent, name, ModulesToSave(getattr(parent, name)))
                saved.append(key)
    config["saved_modules"] = saved
    return PeftModel(model, config)


# --------------------------------------------------------------------------- saving, loading, merging

def remove_adapter_name(key):
    """get_peft_model_state_dict's REMOVE ADAPTER NAME: `x.lora_embedding_A.default` -> `x.lora_embedding_A`,
    `x.lora_A.default.weight` -> `x.lora_A.weight`, `x.modules_to_save.default.bias` -> `x.modules_to_save.bias`."""
    if "." not in key:
        return key
    if key.endswith("." + ADAPTER):
        return key[: -len(ADAPTER) - 1]
    head, _, suffix = key.rpartition(".")
    if head.endswith("." + ADAPTER):
        head = head[: -len(ADAPTER) - 1]
    return head + "." + suffix


def peft_state_dict(pm):
    """get_peft_model_state_dict(pm): the tensors of adapter_model.safetensors with their names.
    - every LoRA parameter: base_model.model.<module>.lora_A.weight / .lora_B.weight, or
      .lora_embedding_A / .lora_embedding_B (nn.Parameters, no .weight);
    - bias "all": every state_dict entry ending in ".bias" (targeted modules' as <module>.base_layer.bias;
      a modules_to_save module's as .original_module.bias and .modules_to_save.bias);
      "lora_only": each LoRA layer's <module>.base_layer.bias (PEFT main; v0.20.0 drops it, see above);
    - each modules_to_save module's copy as base_model.model.<module>.<param> (the base model's names);
    - transformers models whose target_modules name embed_tokens / lm_head: the targeted embedding
      layers' base weights too (save_embedding_layers="auto")."""
    config = pm.peft_config
    sd = pm.state_dict()
    model = pm.base_model.model
    prefix = "base_model.model."
    lora_prefixes = tuple(prefix + n + "." for n, m in model.named_modules() if isinstance(m, LORA_LAYERS))
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith(lora_prefixes) and ".lora_" in k:
            out[k] = v
    if config["bias"] == "all":
        for k, v in sd.items():
            if k.endswith(".bias"):
                out[k] = v
    elif config["bias"] == "lora_only":
        for n, m in model.named_modules():
            k = prefix + n + ".base_layer.bias"
            if isinstance(m, LORA_LAYERS) and k in sd:
                out[k] = sd[k]
    out = OrderedDict((k, out[k]) for k in sd if k in out)  # state_dict order, as PEFT's filters give
    for n, m in model.named_modules():
        if isinstance(m, ModulesToSave):
            for k, v in m.active.state_dict().items():
                out[prefix + n + "." + k] = v
    tm = config["target_modules"]
    if config["transformers"]:
        if isinstance(tm, str):
            targeted = any(re.fullmatch(tm, n) for n, _ in model.named_modules()
                           if any(re.match(r"(.*\.)?%s$" % e, n) for e in EMBEDDING_LAYER_NAMES))
        else:
            targeted = any(e in tm for e in EMBEDDING_LAYER_NAMES)
        if targeted:
            for name in (input_embedding_module_name(model), output_embedding_module_name(model)):
                if name is not None and isinstance(model.get_submodule(name), LORA_LAYERS):
                    base = prefix + name + ".base_layer"
                    for k, v in sd.items():
                        if base in k:
                            out[k] = v
    return OrderedDict((remove_adapter_name(k), v.detach().clone()) for k, v in out.items())


def saved_to_memory_names(pm):
    """saved adapter name -> in-memory state_dict name, for every entry peft_state_dict writes."""
    saved = peft_state_dict(pm)
    sd = pm.state_dict()
    inverse = OrderedDict()
    prefix = "base_model.model."
    for n, m in pm.base_model.model.named_modules():
        if isinstance(m, ModulesToSave):
            for k in m.active.state_dict():
                inverse[prefix + n + "." + k] = prefix + n + ".modules_to_save." + ADAPTER + "." + k
    for k in sd:
        s = remove_adapter_name(k)
        if s in saved and s not in inverse:
            inverse[s] = k
    return inverse


def load_adapter_state(pm, adapter_state):
    """Load an adapter_model.safetensors state (PEFT names) into pm, strictly: every name must be one
    that peft_state_dict writes for this configuration, with the same shape (the engine's 422s)."""
    names = saved_to_memory_names(pm)
    unknown = [k for k in adapter_state if k not in names]
    if unknown:
        raise LoraError("adapter_weights", "unexpected tensors %s (expected names: %s)" % (unknown, list(names)))
    sd = pm.state_dict()
    with torch.no_grad():
        for k, v in adapter_state.items():
            target = sd[names[k]]
            if tuple(v.shape) != tuple(target.shape):
                raise LoraError("adapter_weights", "%s has shape %s, the base needs %s" % (k, list(v.shape), list(target.shape)))
            target.copy_(v.to(target.dtype))


def merged_model(pm):
    """merge_and_unload() on a copy: each LoRA layer's base weight += get_delta_weight() (W0 + s*B@A,
    transposed for fan_in_fan_out and for embeddings), the layer replaced by its base layer, and each
    modules_to_save wrapper by its trained copy. Returns the plain base model (base names)."""
    model = copy.deepcopy(pm.base_model.model)
    for key in [n for n, _ in model.named_modules() if n and "lora_" not in n]:
        try:
            target = model.get_submodule(key)
        except AttributeError:
            continue
        parent, name = get_submodules(model, key)
        if isinstance(target, LORA_LAYERS):
            with torch.no_grad():
                target.base_layer.weight.data += target.delta_weight()
            setattr(parent, name, target.base_layer)
        elif isinstance(target, ModulesToSave):
            setattr(parent, name, target.active)
    return model


def merged_state_dict(pm):
    return OrderedDict((k, v.detach().clone()) for k, v in merged_model(pm).state_dict().items())


def adapter_config(pm):
    """adapter_config.json as PeftModel.save_pretrained writes it: LoraConfig.to_dict() of PEFT v0.20.0
    (every dataclass field but runtime_config), inference_mode true, keys sorted. target_modules is a
    set in PEFT and is written as list(set), whose order changes from run to run; here it is sorted
    (compare it as a set). base_model_name_or_path: null (edgetune does not know the Hub id).
    task_type None (a layers model): auto_mapping names torch.nn.Sequential, as save_pretrained does
    for a model that is not a transformers model. model_type: added for Workers AI's bases only."""
    c = pm.peft_config
    tm = c["target_modules"]
    cfg = {
        "alora_invocation_tokens": None,
        "alpha_pattern": {},
        "arrow_config": None,
        "auto_mapping": None if c["task_type"] is not None else
        {"base_model_class": "Sequential", "parent_library": "torch.nn.modules.container"},
        "base_model_name_or_path": None,
        "bias": c["bias"],
        "corda_config": None,
        "ensure_weight_tying": False,
        "eva_config": None,
        "exclude_modules": None,
        "fan_in_fan_out": c["fan_in_fan_out"],
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": c["lora_alpha"],
        "lora_bias": False,
        "lora_dropout": c["lora_dropout"],
        "lora_ga_config": None,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": c["modules_to_save"],
        "monteclora_config": None,
        "peft_type": "LORA",
        "peft_version": PEFT_VERSION,
        "qalora_group_size": 16,
        "r": c["r"],
        "rank_pattern": {},
        "revision": None,
        "target_modules": tm if isinstance(tm, str) else sorted(tm),
        "target_parameters": None,
        "task_type": c["task_type"],
        "trainable_token_indices": None,
        "use_bdlora": None,
        "use_dora": False,
        "use_qalora": False,
        "use_rslora": c["use_rslora"],
        "velora_config": None,
    }
    if c["model_type"] in WORKERS_AI_MODEL_TYPES:
        cfg["model_type"] = c["model_type"]
    return OrderedDict(sorted(cfg.items()))


# --------------------------------------------------------------------------- self-test

def _tiny_models():
    bert, distil, gpt2, llama = hf.tiny_configs()
    llama_untied = dict(llama, tie_word_embeddings=False, pad_token_id=None)
    return dict(bert=bert, distilbert=distil, gpt2=gpt2, llama=llama, llama_untied=llama_untied)


class _MLP(nn.Sequential):
    """A generate.py-style layers model: fc1, relu, fc2 (nn.Sequential names)."""

    def __init__(self):
        super().__init__(OrderedDict(fc1=nn.Linear(6, 8), relu=nn.ReLU(), fc2=nn.Linear(8, 3)))

    def forward(self, x, mask=None):
        return super().forward(x)


def _inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 20, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    return ids, mask


def _randomize_adapter(pm, seed, scale=0.3):
    """Non-zero B (and embedding A) so that the adapter changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if ".lora_B." in n or ".lora_embedding_" in n or ".modules_to_save." in n:
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def selftest():
    ok = lambda cond, msg: print(("ok   " if cond else "FAIL ") + msg) or cond
    good = True
    cfgs = _tiny_models()
    task_of = lambda cfg: hf.ARCHITECTURES[cfg["architectures"][0]]

    def build(name, seed=3):
        return hf.init_weights(hf.build(cfgs[name]), seed)

    # 1. zero-init adapter == base, bitwise; 2. merged == adapter (float64); on every architecture
    setups = [
        ("bert", dict(target_modules=["query", "value"], modules_to_save=["classifier"])),
        ("bert", dict(target_modules=["word_embeddings", "dense"], bias="all")),
        ("distilbert", dict(target_modules=["q_lin", "v_lin", "lin1"], bias="lora_only")),
        ("gpt2", dict(target_modules=["c_attn"])),
        ("gpt2", dict(target_modules="all-linear")),
        ("llama_untied", dict(target_modules=["q_proj", "v_proj", "o_proj", "embed_tokens"], use_rslora=True, r=4,
                              lora_alpha=16)),
        ("llama_untied", dict(target_modules="all-linear")),
        ("llama_untied", dict(target_modules=r".*layers\.1\.mlp\.(gate|up)_proj")),
    ]
    for name, spec in setups:
        spec = dict(dict(r=2, lora_alpha=3), **spec)
        base = build(name).double().eval()
        ids, mask = _inputs(cfgs[name])
        with torch.no_grad():
            ref = base(ids, mask)
        pm = get_lora_model(copy.deepcopy(base), spec, task_of(cfgs[name]), seed=11).double().eval()
        with torch.no_grad():
            out0 = pm(ids, mask)
        good &= ok(torch.equal(out0, ref), "%s %s: the fresh adapter (B = 0, embedding A = 0) gives the base's outputs bitwise"
                   % (name, spec["target_modules"]))
        _randomize_adapter(pm, 5)
        with torch.no_grad():
            out1 = pm(ids, mask)
            merged = merged_model(pm).eval()
            out2 = merged(ids, mask)
        changed = not torch.allclose(out1, ref, atol=1e-6)
        good &= ok(changed and torch.allclose(out1, out2, atol=1e-10, rtol=0),
                   "%s: merge_and_unload's model gives the adapter model's logits (max diff %.1e)"
                   % (name, float((out1 - out2).abs().max())))
        good &= ok(list(merged.state_dict().keys()) == list(base.state_dict().keys()),
                   "%s: the merged state_dict has the base model's (Hub) names" % name)
        # round trip through the saved names
        saved = peft_state_dict(pm)
        pm2 = get_lora_model(copy.deepcopy(base), spec, task_of(cfgs[name]), seed=99).double().eval()
        load_adapter_state(pm2, saved)
        with torch.no_grad():
            out3 = pm2(ids, mask)
        good &= ok(torch.equal(out3, out1), "%s: saved adapter state loads back into a fresh adapter model (bitwise)" % name)

    # a tied lm_head is the embedding's base weight: LoRA on a tied embedding changes the input embeddings
    # only, but merging writes W0 + delta into the shared matrix, so the merged model's head changes too
    # (PEFT's merge_and_unload does the same to transformers' shared Parameter)
    base = build("llama").double().eval()
    ids, mask = _inputs(cfgs["llama"])
    pm = get_lora_model(copy.deepcopy(base), dict(r=2, target_modules=["embed_tokens"]), "causal-lm", seed=1).double().eval()
    _randomize_adapter(pm, 5)
    with torch.no_grad():
        head_adapter = pm.base_model.model.output_embeddings()
        merged = merged_model(pm)
    good &= ok(torch.equal(head_adapter, base.model.embed_tokens.weight) and
               not torch.allclose(merged.output_embeddings(), base.model.embed_tokens.weight),
               "tied Llama, LoRA on embed_tokens: the adapter's lm_head is W0, the merged model's is W0 + delta "
               "(merged != adapter, as in PEFT)")

    # 3. names
    pm = get_lora_model(build("bert"), dict(r=2, lora_alpha=4, target_modules=["query", "value"], modules_to_save=["classifier"]),
                        "sequence-classification", seed=1)
    names = list(peft_state_dict(pm).keys())
    expect = ["base_model.model.bert.encoder.layer.%d.attention.self.%s.lora_%s.weight" % (i, m, ab)
              for i in range(2) for m in ("query", "value") for ab in "AB"] + \
             ["base_model.model.classifier.weight", "base_model.model.classifier.bias"]
    good &= ok(names == expect, "BERT query/value + classifier: adapter_model.safetensors names %s" % names[:2])
    shapes = {k: list(v.shape) for k, v in peft_state_dict(pm).items()}
    good &= ok(shapes[expect[0]] == [2, 8] and shapes[expect[1]] == [8, 2] and shapes[expect[-2]] == [3, 8],
               "BERT: lora_A [r, in], lora_B [out, r], the classifier's copy [num_labels, hidden]")
    ac = adapter_config(pm)
    good &= ok(ac["modules_to_save"] == ["classifier", "classifier", "score"] and ac["task_type"] == "SEQ_CLS" and
               ac["target_modules"] == ["query", "value"] and ac["inference_mode"] is True and ac["peft_type"] == "LORA"
               and list(ac) == sorted(ac) and "model_type" not in ac and ac["auto_mapping"] is None,
               "BERT adapter_config: SEQ_CLS, modules_to_save + classifier/score (as PeftModelForSequenceClassification "
               "extends it), sorted keys")
    mem = [n for n, p in pm.named_parameters() if p.requires_grad]
    good &= ok(mem == [n for n in mem if ".lora_" in n or ".modules_to_save.default." in n] and
               "base_model.model.classifier.modules_to_save.default.weight" in mem and
               not any("original_module" in n for n in mem),
               "BERT: only lora_A/B and the classifier's copy train (%d tensors)" % len(mem))
    pm = get_lora_model(build("bert"), dict(r=2, lora_alpha=4), "sequence-classification", seed=1)
    good &= ok(pm.peft_config["targeted"] == ["bert.encoder.layer.%d.attention.self.%s" % (i, m) for i in range(2)
                                              for m in ("query", "value")] and
               adapter_config(pm)["target_modules"] == ["query", "value"] and
               pm.peft_config["saved_modules"] == ["classifier"],
               "BERT without target_modules: the model type's default (query, value); SEQ_CLS trains the classifier")
    try:
        get_lora_model(build("distilbert"), dict(r=2), "sequence-classification")
        good &= ok(False, "DistilBERT without target_modules is refused (no default in PEFT's mapping)")
    except LoraError as e:
        good &= ok(e.field == "adapter.target_modules", "DistilBERT without target_modules is refused (no default in PEFT's mapping)")
    pm = get_lora_model(build("distilbert"), dict(r=2, target_modules=["q_lin"]), "sequence-classification")
    good &= ok(pm.peft_config["saved_modules"] == ["pre_classifier", "classifier"],
               "DistilBERT SEQ_CLS: modules_to_save 'classifier' also wraps 'pre_classifier' (PEFT's suffix match)")
    pm = get_lora_model(build("llama"), dict(r=2, target_modules=["embed_tokens", "q_proj"]), "causal-lm")
    sd = peft_state_dict(pm)
    good &= ok(list(sd)[:3] == ["base_model.model.model.embed_tokens.lora_embedding_A",
                                "base_model.model.model.embed_tokens.lora_embedding_B",
                                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] and
               list(sd["base_model.model.model.embed_tokens.lora_embedding_A"].shape) == [2, 20] and
               list(sd["base_model.model.model.embed_tokens.lora_embedding_B"].shape) == [16, 2] and
               "base_model.model.model.embed_tokens.base_layer.weight" in sd,
               "Llama embed_tokens: lora_embedding_A [r, vocab], lora_embedding_B [hidden, r]; the targeted embedding's base "
               "weight saved too (save_embedding_layers='auto')")
    ac = adapter_config(pm)
    good &= ok(ac.get("model_type") == "llama" and ac["task_type"] == "CAUSAL_LM", "Llama adapter_config carries model_type (Workers AI)")

    # all-linear
    pm = get_lora_model(build("bert"), dict(r=2, target_modules="all-linear"), "sequence-classification")
    t = pm.peft_config["targeted"]
    good &= ok(len(t) == 13 and "bert.pooler.dense" in t and "classifier" not in t,
               "BERT all-linear: 12 encoder linears + the pooler, not the classifier (SEQ_CLS head)")
    pm = get_lora_model(build("llama_untied"), dict(r=2, target_modules="all-linear"), "causal-lm")
    t = pm.peft_config["targeted"]
    good &= ok(len(t) == 14 and "lm_head" not in t, "Llama untied all-linear: 7 per layer, not lm_head (output embeddings)")
    good &= ok(adapter_config(pm)["target_modules"] == sorted(t), "all-linear is saved as the list of module names")
    pm = get_lora_model(build("gpt2"), dict(r=2, target_modules="all-linear"), "causal-lm")
    good &= ok(len(pm.peft_config["targeted"]) == 8 and adapter_config(pm)["fan_in_fan_out"] is True,
               "GPT-2 all-linear: the 4 Conv1D per block, fan_in_fan_out true")
    pm = get_lora_model(_MLP(), dict(r=2, target_modules="all-linear"))
    good &= ok(pm.peft_config["targeted"] == ["fc1", "fc2"] and adapter_config(pm)["task_type"] is None and
               adapter_config(pm)["auto_mapping"] == {"base_model_class": "Sequential",
                                                     "parent_library": "torch.nn.modules.container"},
               "layers model all-linear: every linear layer, output layer included; task_type null with auto_mapping")
    # matching rules
    pm = get_lora_model(build("bert"), dict(r=2, target_modules=["attention.self.query", "bert.pooler.dense"]),
                        "sequence-classification")
    good &= ok(pm.peft_config["targeted"] == ["bert.encoder.layer.0.attention.self.query",
                                              "bert.encoder.layer.1.attention.self.query", "bert.pooler.dense"],
               "list entries match the full name or a '.'-suffix")
    try:
        get_lora_model(build("bert"), dict(r=2, target_modules=["ery"]), "sequence-classification")
        good &= ok(False, "a partial name matches nothing: refused")
    except LoraError as e:
        good &= ok(e.field == "adapter.target_modules" and "bert.pooler.dense" in str(e),
                   "target_modules matching nothing: refused, listing the module names")
    try:
        get_lora_model(build("bert"), dict(r=2, target_modules=["output"]), "sequence-classification")
        good &= ok(False, "a container module matched: refused")
    except LoraError as e:
        good &= ok("BertSelfOutput" in str(e), "a matched module that is not Linear/Conv1D/Embedding: refused")
    for bad in (0, -1):
        try:
            get_lora_model(build("bert"), dict(r=bad), "sequence-classification")
            good &= ok(False, "r %d refused" % bad)
        except LoraError as e:
            good &= ok(e.field == "adapter.r", "r = %d refused" % bad)
    pm = get_lora_model(build("bert"), dict(r=2, target_modules=["classifier", "query"], modules_to_save=["classifier"]),
                        "sequence-classification")
    good &= ok("classifier" not in pm.peft_config["targeted"], "a modules_to_save module never gets LoRA")

    # bias modes
    pm = get_lora_model(_MLP(), dict(r=2, target_modules=["fc1"], bias="lora_only"))
    tr = [n for n, p in pm.named_parameters() if p.requires_grad]
    good &= ok(tr == ["base_model.model.fc1.base_layer.bias", "base_model.model.fc1.lora_A.default.weight",
                      "base_model.model.fc1.lora_B.default.weight"] and
               list(peft_state_dict(pm)) == ["base_model.model.fc1.base_layer.bias", "base_model.model.fc1.lora_A.weight",
                                             "base_model.model.fc1.lora_B.weight"],
               "bias lora_only: the adapted layer's bias trains and is saved as <module>.base_layer.bias")
    pm = get_lora_model(_MLP(), dict(r=2, target_modules=["fc1"], bias="all"))
    good &= ok(list(peft_state_dict(pm)) == ["base_model.model.fc1.base_layer.bias", "base_model.model.fc1.lora_A.weight",
                                             "base_model.model.fc1.lora_B.weight", "base_model.model.fc2.bias"] and
               [n for n, p in pm.named_parameters() if p.requires_grad][-1] == "base_model.model.fc2.bias",
               "bias all: every bias trains and is saved (fc2.bias under its base name)")

    # 4. Conv1D fan_in_fan_out == nn.Linear with the transposed weight
    torch.manual_seed(0)
    conv = hf.Conv1D(5, 3).double()
    conv.weight.data.normal_()
    conv.bias.data.normal_()
    lin = nn.Linear(3, 5).double()
    lin.weight.data.copy_(conv.weight.data.T)
    lin.bias.data.copy_(conv.bias.data)
    lc = LoraLinear(conv, 2, 3, 0.0, False, True).double()
    ll = LoraLinear(lin, 2, 3, 0.0, False, False).double()
    good &= ok(list(lc.lora_A[ADAPTER].weight.shape) == [2, 3] and list(lc.lora_B[ADAPTER].weight.shape) == [5, 2],
               "Conv1D [in 3, out 5]: lora_A [r, in], lora_B [out, r], as for nn.Linear")
    with torch.no_grad():
        lc.lora_A[ADAPTER].weight.normal_()
        lc.lora_B[ADAPTER].weight.normal_()
        ll.lora_A[ADAPTER].weight.copy_(lc.lora_A[ADAPTER].weight)
        ll.lora_B[ADAPTER].weight.copy_(lc.lora_B[ADAPTER].weight)
    x = torch.randn(4, 3, dtype=torch.float64)
    manual = x @ conv.weight + conv.bias + 1.5 * (x @ lc.lora_A[ADAPTER].weight.T) @ lc.lora_B[ADAPTER].weight.T
    good &= ok(torch.allclose(lc(x), ll(x), atol=1e-12) and torch.allclose(lc(x), manual, atol=1e-12),
               "Conv1D LoRA == nn.Linear LoRA with W^T == x W0 + b + s (x A^T) B^T")
    good &= ok(torch.allclose(lc.delta_weight(), ll.delta_weight().T, atol=1e-14) and
               torch.allclose(x @ (conv.weight + lc.delta_weight()) + conv.bias, lc(x), atol=1e-12),
               "Conv1D merge: W0 [in, out] + (s B A)^T")
    # rsLoRA scaling and the embedding formula
    good &= ok(scaling_of(4, 16, True) == 8.0 and scaling_of(4, 16, False) == 4.0, "scaling: alpha/sqrt(r) (rsLoRA), alpha/r")
    emb = nn.Embedding(10, 6, padding_idx=0).double()
    le = LoraEmbedding(emb, 3, 6, 0.0, False).double()
    with torch.no_grad():
        le.lora_embedding_A[ADAPTER].normal_()
    ids = torch.tensor([[0, 3, 9, 3], [1, 0, 0, 2]])
    onehot = F.one_hot(ids, 10).double()
    A, B = le.lora_embedding_A[ADAPTER], le.lora_embedding_B[ADAPTER]
    good &= ok(torch.allclose(le(ids), emb(ids) + 2.0 * (onehot @ A.T) @ B.T, atol=1e-12),
               "Embedding LoRA: base + s * onehot(x) A^T B^T")
    le(ids).sum().backward()
    good &= ok(float(A.grad[:, 0].abs().max()) == 0.0 and float(A.grad[:, 3].abs().max()) > 0,
               "Embedding LoRA: no gradient into A's padding_idx column (F.embedding with padding_idx)")
    # init stream: lora_A is the third kaiming draw after the seed
    torch.manual_seed(7)
    nn.Linear(8, 4, bias=False)  # tiny GPT-2: c_attn is Conv1D [in 8, out 24]
    nn.Linear(4, 24, bias=False)
    a = torch.empty(4, 8)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    pm = get_lora_model(build("gpt2"), dict(r=4, target_modules=["c_attn"]), "causal-lm", seed=7)
    first = pm.base_model.model.transformer.h[0].attn.c_attn
    good &= ok(torch.equal(first.lora_A[ADAPTER].weight, a) and float(first.lora_B[ADAPTER].weight.abs().max()) == 0.0,
               "init: manual_seed, nn.Linear(in, r) and nn.Linear(r, out) constructed, then kaiming_uniform_(A, a=sqrt(5)); B = 0")
    print("self-test " + ("passed" if good else "FAILED"))
    return good


if __name__ == "__main__":
    if "--selftest" in sys.argv[1:] or len(sys.argv) == 1:
        sys.exit(0 if selftest() else 1)
