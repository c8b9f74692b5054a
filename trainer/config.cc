#include "trainer/config.h"

#include <set>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"

namespace mrl {

using nlohmann::json;

#define MRL_FIELDS_DATA(X) \
  X(kind) X(fmnist_dir) X(train_features) X(train_labels) X(test_features) X(test_labels) \
  X(train_limit) X(test_limit) X(holdout) X(augment) X(max_shift) X(train_shards)           \
  X(test_shards) X(image_size) X(crop_scale_min) X(crop_scale_max) X(crop_ratio_min)         \
  X(crop_ratio_max) X(flip) X(eval_resize) X(shuffle_buffer) X(decode_threads) X(prefetch_batches) \
  X(composites) X(test_composites) X(composite_seed)
#define MRL_FIELDS_MODEL(X)                                                                  \
  X(encoder) X(dim) X(nesting) X(head) X(ff_dim) X(nesting_weights) X(label_smoothing)      \
  X(conv_channels) X(mlp_hidden) X(num_classes) X(channels_last) X(batch_norm) X(pool_cols)
#define MRL_FIELDS_OPTIM(X)                                                                  \
  X(optimizer) X(lr) X(momentum) X(nesterov) X(weight_decay) X(beta1) X(beta2) X(eps)        \
  X(schedule) X(warmup_epochs) X(final_lr_ratio)
#define MRL_FIELDS_DIST(X) X(grad_accum) X(bucket_mb) X(timeout_s) X(backend)
#define MRL_FIELDS_TOP(X)                                                                    \
  X(epochs) X(batch_size) X(seed) X(threads) X(out_dir) X(log_every) X(checkpoint_every)    \
  X(keep_checkpoints) X(resume) X(stop_after_steps) X(evaluate) X(export_embeddings)         \
  X(eval_dims) X(eval_svd) X(device) X(precision) X(loss_scale) X(loss_scale_growth_interval)

namespace {

template <typename S>
json SectionToJson(const S& s);
template <typename S>
Status SectionFromJson(const json& j, const std::string& section, S* s);

#define MRL_TO_JSON(f) j[#f] = s.f;
#define MRL_FROM_JSON(f)                                                              \
  if (auto it = j.find(#f); it != j.end()) {                                          \
    try {                                                                             \
      it->get_to(s->f);                                                               \
    } catch (const json::exception& e) {                                              \
      return Status::InvalidArgument("config field '" + prefix + #f + "': " + e.what()); \
    }                                                                                 \
    known.erase(#f);                                                                  \
  }

template <>
json SectionToJson(const DataConfig& s) { json j; MRL_FIELDS_DATA(MRL_TO_JSON) return j; }
template <>
json SectionToJson(const ModelConfig& s) { json j; MRL_FIELDS_MODEL(MRL_TO_JSON) return j; }
template <>
json SectionToJson(const OptimConfig& s) { json j; MRL_FIELDS_OPTIM(MRL_TO_JSON) return j; }
template <>
json SectionToJson(const DistConfig& s) { json j; MRL_FIELDS_DIST(MRL_TO_JSON) return j; }

Status RejectUnknown(const std::set<std::string>& left, const std::string& prefix) {
  if (left.empty()) return Status::Ok();
  return Status::InvalidArgument("unknown config field '" + prefix + *left.begin() + "'");
}

std::set<std::string> Keys(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
  return k;
}

template <>
Status SectionFromJson(const json& j, const std::string& prefix, DataConfig* s) {
  auto known = Keys(j);
  MRL_FIELDS_DATA(MRL_FROM_JSON)
  return RejectUnknown(known, prefix);
}
template <>
Status SectionFromJson(const json& j, const std::string& prefix, ModelConfig* s) {
  auto known = Keys(j);
  MRL_FIELDS_MODEL(MRL_FROM_JSON)
  return RejectUnknown(known, prefix);
}
template <>
Status SectionFromJson(const json& j, const std::string& prefix, OptimConfig* s) {
  auto known = Keys(j);
  MRL_FIELDS_OPTIM(MRL_FROM_JSON)
  return RejectUnknown(known, prefix);
}

template <>
Status SectionFromJson(const json& j, const std::string& prefix, DistConfig* s) {
  auto known = Keys(j);
  MRL_FIELDS_DIST(MRL_FROM_JSON)
  return RejectUnknown(known, prefix);
}

json ToJson(const TrainConfig& c) {
  json j;
  j["data"] = SectionToJson(c.data);
  j["model"] = SectionToJson(c.model);
  j["optim"] = SectionToJson(c.optim);
  j["dist"] = SectionToJson(c.dist);
  const TrainConfig& s = c;
  MRL_FIELDS_TOP(MRL_TO_JSON)
  return j;
}

Status FromJson(const json& j, TrainConfig* s) {
  if (!j.is_object()) return Status::InvalidArgument("config must be a JSON object");
  auto known = Keys(j);
  const std::string prefix;
  for (const char* sec : {"data", "model", "optim", "dist"}) {
    if (j.contains(sec) && !j[sec].is_object()) {
      return Status::InvalidArgument(std::string("config section '") + sec + "' must be an object");
    }
    known.erase(sec);
  }
  if (j.contains("data")) MRL_RETURN_IF_ERROR(SectionFromJson(j["data"], "data.", &s->data));
  if (j.contains("model")) MRL_RETURN_IF_ERROR(SectionFromJson(j["model"], "model.", &s->model));
  if (j.contains("optim")) MRL_RETURN_IF_ERROR(SectionFromJson(j["optim"], "optim.", &s->optim));
  if (j.contains("dist")) MRL_RETURN_IF_ERROR(SectionFromJson(j["dist"], "dist.", &s->dist));
  MRL_FIELDS_TOP(MRL_FROM_JSON)
  return RejectUnknown(known, prefix);
}

}  // namespace

std::vector<int64_t> DefaultNesting(int64_t dim) {
  std::vector<int64_t> out;
  for (int64_t m = 8; m < dim; m *= 2) out.push_back(m);
  out.push_back(dim);
  return out;
}

Status FinalizeConfig(TrainConfig* c) {
  ModelConfig& m = c->model;
  if (m.dim <= 0) return Status::InvalidArgument("model.dim must be positive");
  if (m.nesting.empty()) m.nesting = DefaultNesting(m.dim);
  for (size_t i = 0; i < m.nesting.size(); ++i) {
    if (m.nesting[i] <= 0) return Status::InvalidArgument("model.nesting dims must be positive");
    if (m.nesting[i] > m.dim) {
      return Status::InvalidArgument("model.nesting dim " + std::to_string(m.nesting[i]) +
                                     " exceeds model.dim " + std::to_string(m.dim));
    }
    if (i > 0 && m.nesting[i] <= m.nesting[i - 1]) {
      return Status::InvalidArgument("model.nesting must be strictly increasing (got " +
                                     std::to_string(m.nesting[i - 1]) + " then " +
                                     std::to_string(m.nesting[i]) + ")");
    }
  }
  if (m.nesting_weights.empty()) m.nesting_weights.assign(m.nesting.size(), 1.0);
  if (m.nesting_weights.size() != m.nesting.size()) {
    return Status::InvalidArgument("model.nesting_weights has " +
                                   std::to_string(m.nesting_weights.size()) + " entries for " +
                                   std::to_string(m.nesting.size()) + " nesting dims");
  }
  for (double w : m.nesting_weights) {
    if (!(w >= 0)) return Status::InvalidArgument("model.nesting_weights must be >= 0");
  }
  if (m.head != "mrl" && m.head != "mrl-e" && m.head != "ff") {
    return Status::InvalidArgument("model.head must be mrl, mrl-e or ff (got '" + m.head + "')");
  }
  if (m.head == "ff") {
    if (m.ff_dim == 0) m.ff_dim = m.dim;
    if (m.ff_dim < 0 || m.ff_dim > m.dim) {
      return Status::InvalidArgument("model.ff_dim must be in [1, model.dim]");
    }
  }
  if (m.encoder != "conv4" && m.encoder != "resnet18" && m.encoder != "resnet50" &&
      m.encoder != "mlp") {
    return Status::InvalidArgument("model.encoder must be conv4, resnet18, resnet50 or mlp (got '" +
                                   m.encoder + "')");
  }
  if (m.label_smoothing < 0 || m.label_smoothing >= 1) {
    return Status::InvalidArgument("model.label_smoothing must be in [0, 1)");
  }
  const DataConfig& d = c->data;
  if (d.kind != "fmnist" && d.kind != "fmnist3" && d.kind != "npy" && d.kind != "shards") {
    return Status::InvalidArgument("data.kind must be fmnist, fmnist3, npy or shards");
  }
  if (d.kind == "fmnist3") {
    if (d.composites < 1000 || d.test_composites < 1000) {
      return Status::InvalidArgument(
          "data.composites and data.test_composites must be >= 1000 (one per class)");
    }
    if (d.holdout < 1000 || d.holdout >= 60000) {
      return Status::InvalidArgument("data.holdout must be in [1000, 60000) for fmnist3: the last "
                                     "data.holdout training items are held out, and as many "
                                     "held-out composites are made of them");
    }
    if (d.augment) {
      return Status::InvalidArgument("data.augment is not supported for fmnist3: a flip would "
                                     "reverse the order of the items the label names");
    }
    if (d.train_limit != 0 || d.test_limit != 0) {
      return Status::InvalidArgument(
          "fmnist3 sizes are data.composites and data.test_composites, not the limits");
    }
  }
  if (m.pool_cols < 0) return Status::InvalidArgument("model.pool_cols must be >= 0");
  if (m.pool_cols == 0) m.pool_cols = d.kind == "fmnist3" ? 3 : 1;
  if (d.kind == "shards") {
    if (d.train_shards.empty()) {
      return Status::InvalidArgument("data.kind=shards needs data.train_shards");
    }
    if (d.image_size < 0) return Status::InvalidArgument("data.image_size must be >= 0");
    if (!(d.crop_scale_min > 0 && d.crop_scale_min <= d.crop_scale_max && d.crop_scale_max <= 1)) {
      return Status::InvalidArgument("need 0 < data.crop_scale_min <= data.crop_scale_max <= 1");
    }
    if (!(d.crop_ratio_min > 0 && d.crop_ratio_min <= d.crop_ratio_max)) {
      return Status::InvalidArgument("need 0 < data.crop_ratio_min <= data.crop_ratio_max");
    }
    if (!(d.eval_resize >= 1)) return Status::InvalidArgument("data.eval_resize must be >= 1");
    if (d.decode_threads < 1 || d.prefetch_batches < 1) {
      return Status::InvalidArgument("data.decode_threads and data.prefetch_batches must be >= 1");
    }
  }
  if (c->data.kind == "npy" && m.encoder != "mlp") {
    return Status::InvalidArgument("data.kind=npy (dense features) needs model.encoder=mlp");
  }
  if ((c->data.kind == "fmnist" || c->data.kind == "fmnist3") && m.encoder == "mlp") {
    return Status::InvalidArgument("model.encoder=mlp needs dense features (data.kind=npy)");
  }
  if (c->batch_size <= 0) return Status::InvalidArgument("batch_size must be positive");
  if (c->epochs <= 0) return Status::InvalidArgument("epochs must be positive");
  if (c->data.holdout < 0) return Status::InvalidArgument("data.holdout must be >= 0");
  if (c->data.max_shift < 0) return Status::InvalidArgument("data.max_shift must be >= 0");
  const OptimConfig& o = c->optim;
  if (o.optimizer != "sgd" && o.optimizer != "adamw") {
    return Status::InvalidArgument("optim.optimizer must be sgd or adamw");
  }
  if (o.schedule != "cosine" && o.schedule != "onecycle" && o.schedule != "constant") {
    return Status::InvalidArgument("optim.schedule must be cosine, onecycle or constant");
  }
  if (!(o.lr > 0)) return Status::InvalidArgument("optim.lr must be positive");
  if (c->dist.grad_accum < 1) return Status::InvalidArgument("dist.grad_accum must be >= 1");
  if (!(c->dist.bucket_mb > 0)) return Status::InvalidArgument("dist.bucket_mb must be positive");
  if (!(c->dist.timeout_s > 0)) return Status::InvalidArgument("dist.timeout_s must be positive");
  if (c->keep_checkpoints < 1) return Status::InvalidArgument("keep_checkpoints must be >= 1");
  if (c->dist.backend != "auto" && c->dist.backend != "mpi" && c->dist.backend != "nccl") {
    return Status::InvalidArgument("dist.backend must be auto, mpi or nccl");
  }
  if (c->device != "auto" && c->device != "cpu" && c->device != "cuda") {
    return Status::InvalidArgument("device must be auto, cpu or cuda");
  }
  if (c->precision != "fp32" && c->precision != "bf16" && c->precision != "fp16") {
    return Status::InvalidArgument("precision must be fp32, bf16 or fp16");
  }
  if (!(c->loss_scale >= 1)) return Status::InvalidArgument("loss_scale must be >= 1");
  if (c->loss_scale_growth_interval < 1) {
    return Status::InvalidArgument("loss_scale_growth_interval must be >= 1");
  }
  if (c->eval_dims.empty()) {
    c->eval_dims = m.nesting;
    if (m.head == "ff") c->eval_dims = {m.ff_dim};
  }
  for (int64_t d : c->eval_dims) {
    if (d <= 0 || d > m.dim) return Status::InvalidArgument("eval_dims must be in [1, model.dim]");
  }
  if (c->out_dir.empty()) return Status::InvalidArgument("out_dir must be set");
  return Status::Ok();
}

std::string ConfigToJson(const TrainConfig& config, int indent) {
  return ToJson(config).dump(indent);
}

Result<TrainConfig> ConfigFromJson(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("config is not valid JSON: ") + e.what());
  }
  TrainConfig c;
  MRL_RETURN_IF_ERROR(FromJson(j, &c));
  return c;
}

Result<TrainConfig> LoadConfigFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return Status::NotFound("config file '" + path + "' not found");
  auto c = ConfigFromJson(text.value());
  if (!c.ok()) return Status::InvalidArgument(path + ": " + c.status().message());
  return c;
}

Status ApplyOverride(TrainConfig* config, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Status::InvalidArgument("--set expects key=value, got '" + assignment + "'");
  }
  const std::string key = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  json v;
  try {
    v = json::parse(value);
  } catch (const json::exception&) {
    v = value;  // a bare string such as head=mrl-e
  }
  json j = ToJson(*config);
  json* node = &j;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) {
      return Status::InvalidArgument("unknown config field '" + key + "'");
    }
    node = &(*node)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  *node = v;
  TrainConfig updated;
  MRL_RETURN_IF_ERROR(FromJson(j, &updated));
  *config = updated;
  return Status::Ok();
}

}  // namespace mrl
