// PaddleSeg YAML configs: loading with `_base_` / `_inherited_` merge rules, --opts and typed-flag
// overrides, then validation into the typed specs of config.h.
// Semantics: PaddleSeg paddleseg/cvlibs/config.py (merge), builder.py (optimizer, LR scheduler),
// config_checker.py (loss sugar, ignore_index and num_classes injection), reference/ppliteseg.md
// §3.1, §4.1, §4.2, §4.5. Tested by tests/test_config.cpp.
//
// yaml-cpp only parses: the YAML is copied at once into the small `Value` tree below, which
// remembers for every node the file (or flag) it came from, so that an error in a value inherited
// from a `_base_` file names that file. (yaml-cpp nodes are also reference-like handles whose
// assignment rebinds shared data, which makes in-place merging error-prone.)
#include "train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

namespace engine::train {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string did_you_mean(const std::string& key, const std::vector<std::string>& allowed) {
  std::string best;
  size_t best_d = std::max<size_t>(2, key.size() / 3) + 1;
  for (const std::string& a : allowed) {
    const size_t d = edit_distance(key, a);
    if (d < best_d) best_d = d, best = a;
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

namespace {

namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------------ tree

struct Value {
  enum class Kind { Null, Scalar, Seq, Map };
  Kind kind = Kind::Null;
  std::string text;                                    // Scalar: as written
  bool quoted = false;                                 // Scalar: quoted or tagged !!str, so always a string
  std::vector<Value> items;                            // Seq
  std::vector<std::pair<std::string, Value>> entries;  // Map, in file order
  std::string file;                                    // where this node came from (for messages)

  bool is_map() const { return kind == Kind::Map; }
  const Value* find(const std::string& key) const {
    for (const auto& [k, v] : entries)
      if (k == key) return &v;
    return nullptr;
  }
  Value* find(const std::string& key) {
    for (auto& [k, v] : entries)
      if (k == key) return &v;
    return nullptr;
  }
};

Value empty_map(const std::string& file) {
  Value v;
  v.kind = Value::Kind::Map;
  v.file = file;
  return v;
}

std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }
std::string index_path(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

template <class... A>
[[noreturn]] void config_fail(const std::string& file, const std::string& path, const A&... what) {
  std::ostringstream s;
  s << file << ": " << (path.empty() ? "(top level)" : path) << ": ";
  (s << ... << what);
  throw ConfigError(s.str());
}

// ------------------------------------------------------------------------------- scalar grammar
// YAML 1.1 as PyYAML resolves it (PaddleSeg loads with PyYAML), plus exponents without a dot
// ("1e-5"), which PyYAML would read as a string but every user means as a number.

bool parse_bool_text(const std::string& s, bool& out) {
  static const std::set<std::string> t{"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> f{"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (t.count(s)) return out = true, true;
  if (f.count(s)) return out = false, true;
  return false;
}

bool parse_int_text(const std::string& s, int64_t& out) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  if (i == s.size()) return false;
  for (size_t j = i; j < s.size(); ++j)
    if (s[j] < '0' || s[j] > '9') return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

bool parse_float_text(const std::string& s, double& out) {
  // [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?
  size_t i = 0, n = s.size();
  if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
  size_t mantissa_digits = 0;
  while (i < n && std::isdigit((unsigned char)s[i])) ++i, ++mantissa_digits;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && std::isdigit((unsigned char)s[i])) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < n && std::isdigit((unsigned char)s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  if (i != n) return false;
  out = std::strtod(s.c_str(), nullptr);
  return std::isfinite(out);
}

bool is_number(const Value& v) {
  double d;
  return v.kind == Value::Kind::Scalar && !v.quoted && parse_float_text(v.text, d);
}

// How a value reads in a message: numbers and booleans plain, strings quoted, lists in flow style.
std::string describe(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Null:
      return "nothing (null)";
    case Value::Kind::Scalar: {
      bool b;
      if (!v.quoted && (is_number(v) || parse_bool_text(v.text, b))) return v.text;
      return "'" + v.text + "'";
    }
    case Value::Kind::Seq: {
      std::string s = "[";
      for (size_t i = 0; i < v.items.size(); ++i) s += (i ? ", " : "") + describe(v.items[i]);
      return s + "]";
    }
    case Value::Kind::Map: {
      std::string s = "{";
      for (size_t i = 0; i < v.entries.size(); ++i) s += (i ? ", " : "") + v.entries[i].first + ": ...";
      return s + "}";
    }
  }
  return "?";
}

// ---------------------------------------------------------------------------- yaml-cpp -> Value

Value from_yaml(const YAML::Node& n, const std::string& file, const std::string& path) {
  Value v;
  v.file = file;
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      v.kind = Value::Kind::Null;
      break;
    case YAML::NodeType::Scalar:
      v.kind = Value::Kind::Scalar;
      v.text = n.Scalar();
      v.quoted = n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str";
      break;
    case YAML::NodeType::Sequence:
      v.kind = Value::Kind::Seq;
      for (size_t i = 0; i < n.size(); ++i) v.items.push_back(from_yaml(n[i], file, index_path(path, i)));
      break;
    case YAML::NodeType::Map:
      v.kind = Value::Kind::Map;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (!it->first.IsScalar()) config_fail(file, path, "mapping keys must be plain names");
        const std::string key = it->first.Scalar();
        if (v.find(key)) config_fail(file, join(path, key), "duplicate key");
        v.entries.emplace_back(key, from_yaml(it->second, file, join(path, key)));
      }
      break;
  }
  return v;
}

Value parse_yaml_text(const std::string& text, const std::string& origin, const std::string& path) {
  try {
    return from_yaml(YAML::Load(text), origin, path);
  } catch (const YAML::Exception& e) {
    config_fail(origin, path, "cannot parse value '", text, "' as YAML: ", e.msg);
  }
}

// --------------------------------------------------------------------------------------- merging

// `_inherited_` must be a boolean; false means "do not merge with the base's dict".
bool inherits(const Value& map, const std::string& path) {
  const Value* f = map.find("_inherited_");
  if (!f) return true;
  bool b;
  if (f->kind != Value::Kind::Scalar || f->quoted || !parse_bool_text(f->text, b))
    config_fail(f->file, join(path, "_inherited_"), "expected True or False, got ", describe(*f));
  return b;
}

// PaddleSeg's _update_dic: `over` wins; dicts merge recursively unless over says _inherited_: False.
void merge_into(Value& base, const Value& over, const std::string& path) {
  base.file = over.file;
  for (const auto& [key, v] : over.entries) {
    if (key == "_inherited_") continue;
    const std::string p = join(path, key);
    Value* b = base.find(key);
    if (b && b->is_map() && v.is_map() && inherits(v, p)) {
      merge_into(*b, v, p);
    } else if (b) {
      *b = v;
    } else {
      base.entries.emplace_back(key, v);
    }
  }
}

void strip_inherited(Value& v, const std::string& path) {
  if (v.is_map()) {
    inherits(v, path);  // validates the value
    std::erase_if(v.entries, [](const auto& e) { return e.first == "_inherited_"; });
    for (auto& [k, c] : v.entries) strip_inherited(c, join(path, k));
  } else if (v.kind == Value::Kind::Seq) {
    for (size_t i = 0; i < v.items.size(); ++i) strip_inherited(v.items[i], index_path(path, i));
  }
}

std::string normal_key(const fs::path& p) {
  std::error_code ec;
  const fs::path c = fs::weakly_canonical(p, ec);
  return (ec ? fs::absolute(p).lexically_normal() : c).string();
}

// Loads `path` and, recursively, its `_base_` files. `chain` holds the files being loaded (cycles).
Value load_file(const std::string& path, std::vector<std::string>& chain, const std::string& includer) {
  const std::string key = normal_key(path);
  if (std::find(chain.begin(), chain.end(), key) != chain.end()) {
    std::string cycle;
    for (auto it = std::find(chain.begin(), chain.end(), key); it != chain.end(); ++it) cycle += *it + " -> ";
    config_fail(includer, "_base_", "cycle of _base_ files: ", cycle, key);
  }
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    if (includer.empty()) throw ConfigError(path + ": config file not found");
    config_fail(includer, "_base_", "base config file not found: ", path);
  }
  YAML::Node node;
  try {
    node = YAML::LoadFile(path);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(path + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                      ": YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path + ": cannot read config file: " + e.msg);
  }
  Value own = from_yaml(node, path, "");
  if (own.kind == Value::Kind::Null) own = empty_map(path);  // an empty file
  if (!own.is_map()) config_fail(path, "", "expected a mapping of keys at the top level, got ", describe(own));

  std::vector<std::string> bases;
  if (const Value* b = own.find("_base_")) {
    if (b->kind == Value::Kind::Scalar) {
      bases.push_back(b->text);
    } else if (b->kind == Value::Kind::Seq) {
      for (size_t i = 0; i < b->items.size(); ++i) {
        if (b->items[i].kind != Value::Kind::Scalar)
          config_fail(path, index_path("_base_", i), "expected a file name, got ", describe(b->items[i]));
        bases.push_back(b->items[i].text);
      }
    } else {
      config_fail(path, "_base_", "expected a file name or a list of file names, got ", describe(*b));
    }
    std::erase_if(own.entries, [](const auto& e) { return e.first == "_base_"; });
  }
  chain.push_back(key);
  // PaddleSeg: dic = merge(dic, base) for each base in order, so earlier bases win over later ones.
  // A top-level `_inherited_: False` keeps the file as it is (PaddleSeg's _update_dic at the root).
  Value acc = own;
  if (!inherits(own, "")) bases.clear();
  for (const std::string& b : bases) {
    const std::string base_path = (fs::path(path).parent_path() / b).lexically_normal().string();
    Value base = load_file(base_path, chain, path);
    merge_into(base, acc, "");
    acc = std::move(base);
  }
  chain.pop_back();
  acc.file = path;
  return acc;
}

// ----------------------------------------------------------------------------------- --opts

// Splits "a.b[2].c" into steps: a name, or an index into a list.
struct Step {
  std::string key;
  long index = -1;
};

std::vector<Step> parse_key_path(const std::string& key, const std::string& item) {
  std::vector<Step> steps;
  size_t i = 0;
  auto bad = [&]() -> void {
    throw ConfigError("--opts: '" + item +
                      "': expected key.sub[.index]=value, e.g. train_dataset.transforms[1].crop_size=[256,256]");
  };
  while (i <= key.size()) {
    size_t j = i;
    while (j < key.size() && key[j] != '.' && key[j] != '[') ++j;
    if (j == i) bad();
    steps.push_back({key.substr(i, j - i), -1});
    while (j < key.size() && key[j] == '[') {
      const size_t close = key.find(']', j);
      if (close == std::string::npos) bad();
      int64_t idx = 0;
      if (!parse_int_text(key.substr(j + 1, close - j - 1), idx) || idx < 0) bad();
      steps.push_back({"", (long)idx});
      j = close + 1;
    }
    if (j == key.size()) break;
    if (key[j] != '.') bad();
    i = j + 1;
  }
  return steps;
}

// Sets root[path] = value, creating dicts on the way (PaddleSeg's setdefault walk).
void set_path(Value& root, const std::vector<Step>& steps, const Value& value, const std::string& origin) {
  Value* cur = &root;
  std::string path;
  for (size_t s = 0; s < steps.size(); ++s) {
    const Step& st = steps[s];
    const bool last = s + 1 == steps.size();
    if (st.index >= 0) {
      if (cur->kind != Value::Kind::Seq)
        config_fail(origin, path, "cannot index [", st.index, "]: the value is ", describe(*cur), ", not a list");
      if ((size_t)st.index >= cur->items.size())
        config_fail(origin, index_path(path, st.index), "index out of range (the list has ", cur->items.size(),
                    " entries)");
      path = index_path(path, st.index);
      cur = &cur->items[st.index];
    } else {
      if (cur->kind == Value::Kind::Null) *cur = empty_map(origin);
      if (!cur->is_map())
        config_fail(origin, path, "cannot set key '", st.key, "': the value is ", describe(*cur), ", not a mapping");
      path = join(path, st.key);
      Value* next = cur->find(st.key);
      if (!next) {
        cur->entries.emplace_back(st.key, last ? value : empty_map(origin));
        next = &cur->entries.back().second;
      }
      cur = next;
    }
    if (last) *cur = value;
  }
}

void apply_override(Value& root, const std::string& key, const Value& value, const std::string& origin) {
  std::vector<Step> steps = parse_key_path(key, key);
  set_path(root, steps, value, origin);
}

// ---------------------------------------------------------------------------------- emitting

void emit(YAML::Emitter& out, const Value& v) {
  switch (v.kind) {
    case Value::Kind::Null:
      out << YAML::Null;
      break;
    case Value::Kind::Scalar:
      if (v.quoted) out << YAML::SingleQuoted;
      out << v.text;
      break;
    case Value::Kind::Seq: {
      const bool flat = std::all_of(v.items.begin(), v.items.end(), [](const Value& c) {
        return c.kind == Value::Kind::Scalar || c.kind == Value::Kind::Null;
      });
      if (flat) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const Value& c : v.items) emit(out, c);
      out << YAML::EndSeq;
      break;
    }
    case Value::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& [k, c] : v.entries) {
        out << YAML::Key << k << YAML::Value;
        emit(out, c);
      }
      out << YAML::EndMap;
      break;
  }
}

// ------------------------------------------------------------------------------- typed reading

std::string list_str(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

// A mapping at a key path with typed getters. Every getter names the key path and the file the
// value came from; `check_keys` rejects keys that are not in the allowed list.
class Map {
 public:
  Map(const Value& v, std::string path) : v_(v), path_(std::move(path)) {
    if (!v.is_map()) config_fail(v.file, path_, "expected a mapping of keys, got ", describe(v));
  }
  const std::string& path() const { return path_; }
  const std::string& file() const { return v_.file; }
  const Value* get(const std::string& key) const {
    const Value* c = v_.find(key);
    return (c && c->kind == Value::Kind::Null) ? nullptr : c;  // "key:" with no value = absent
  }
  bool has(const std::string& key) const { return get(key) != nullptr; }
  std::string at(const std::string& key) const { return join(path_, key); }

  void check_keys(const std::vector<std::string>& allowed, const std::string& context = "") const {
    for (const auto& [k, c] : v_.entries) {
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      config_fail(c.file, join(path_, k), "unknown key", context, did_you_mean(k, allowed),
                  "; known keys: ", list_str(allowed));
    }
  }
  [[noreturn]] void missing(const std::string& key, const std::string& why = "") const {
    config_fail(v_.file, at(key), "missing", why);
  }

  std::optional<double> number(const std::string& key) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    double d;
    if (c->kind != Value::Kind::Scalar || c->quoted || !parse_float_text(c->text, d))
      config_fail(c->file, at(key), "expected a number, got ", describe(*c));
    return d;
  }
  std::optional<int64_t> integer(const std::string& key) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    int64_t i = 0;
    if (c->kind != Value::Kind::Scalar || c->quoted || !parse_int_text(c->text, i))
      config_fail(c->file, at(key), "expected an integer, got ", describe(*c));
    return i;
  }
  std::optional<bool> boolean(const std::string& key) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    bool b;
    if (c->kind != Value::Kind::Scalar || c->quoted || !parse_bool_text(c->text, b))
      config_fail(c->file, at(key), "expected True or False, got ", describe(*c));
    return b;
  }
  std::optional<std::string> string(const std::string& key) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    if (c->kind != Value::Kind::Scalar) config_fail(c->file, at(key), "expected a string, got ", describe(*c));
    return c->text;
  }
  // A list of numbers; a single number is a 1-element list (PaddleSeg accepts `scales: 0.5`).
  std::optional<std::vector<double>> numbers(const std::string& key, bool scalar_ok = true) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    std::vector<double> out;
    double d;
    if (scalar_ok && is_number(*c)) {
      parse_float_text(c->text, d);
      return std::vector<double>{d};
    }
    if (c->kind != Value::Kind::Seq) config_fail(c->file, at(key), "expected a list of numbers, got ", describe(*c));
    for (const Value& e : c->items) {
      if (!is_number(e)) config_fail(c->file, at(key), "expected a list of numbers, got ", describe(*c));
      parse_float_text(e.text, d);
      out.push_back(d);
    }
    return out;
  }
  std::optional<std::vector<int64_t>> integers(const std::string& key) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    std::vector<int64_t> out;
    int64_t i = 0;
    if (c->kind != Value::Kind::Seq) config_fail(c->file, at(key), "expected a list of integers, got ", describe(*c));
    for (const Value& e : c->items) {
      if (e.kind != Value::Kind::Scalar || e.quoted || !parse_int_text(e.text, i))
        config_fail(c->file, at(key), "expected a list of integers, got ", describe(*c));
      out.push_back(i);
    }
    return out;
  }
  // A list of positive ints that fit an int (channel counts, sizes).
  std::optional<std::vector<int>> positive_ints(const std::string& key, size_t exact_len = 0) const {
    const Value* c = get(key);
    if (!c) return std::nullopt;
    std::vector<int> out;
    bool ok = c->kind == Value::Kind::Seq && (exact_len == 0 ? !c->items.empty() : c->items.size() == exact_len);
    for (size_t k = 0; ok && k < c->items.size(); ++k) {
      int64_t i = 0;
      const Value& e = c->items[k];
      ok = e.kind == Value::Kind::Scalar && !e.quoted && parse_int_text(e.text, i) && i > 0 && i < (1 << 30);
      out.push_back((int)i);
    }
    if (!ok) {
      const std::string n = exact_len ? std::to_string(exact_len) : "a list of";
      config_fail(c->file, at(key), "expected ", n, " positive integers, got ", describe(*c));
    }
    return out;
  }
  const Value* value(const std::string& key) const { return get(key); }

  // Value-range failures name the value's own file.
  template <class... A>
  [[noreturn]] void bad(const std::string& key, const A&... what) const {
    const Value* c = get(key);
    config_fail(c ? c->file : v_.file, at(key), what...);
  }

 private:
  const Value& v_;
  std::string path_;
};

// ----------------------------------------------------------------------------- sections

const std::vector<std::string> kTopKeys = {"batch_size",        "iters", "train_dataset", "val_dataset", "optimizer",
                                           "lr_scheduler",      "loss",  "model",         "test_config", "export",
                                           "to_static_training"};

// Transforms whose argument names and shapes PaddleSeg's transforms.py defines (§4.4); other types
// pass through and data/ accepts or rejects them.
struct KnownTransform {
  const char* type;
  std::vector<std::string> args;
};
const std::vector<KnownTransform> kKnownTransforms = {
    {"ResizeStepScaling", {"min_scale_factor", "max_scale_factor", "scale_step_size"}},
    {"RandomPaddingCrop",
     {"crop_size", "im_padding_value", "label_padding_value", "category_max_ratio", "ignore_index", "loop_times"}},
    {"RandomHorizontalFlip", {"prob"}},
    {"RandomVerticalFlip", {"prob"}},
    {"RandomDistort",
     {"brightness_range", "brightness_prob", "contrast_range", "contrast_prob", "saturation_range", "saturation_prob",
      "hue_range", "hue_prob", "sharpness_range", "sharpness_prob"}},
    {"Normalize", {"mean", "std"}},
};

data::TransformSpec parse_transform(const Value& v, const std::string& path) {
  const Map m(v, path);
  data::TransformSpec t;
  t.where = path;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (every transform names its type)");
  t.type = *type;
  const KnownTransform* known = nullptr;
  for (const auto& k : kKnownTransforms)
    if (t.type == k.type) known = &k;
  if (known) {
    std::vector<std::string> allowed = known->args;
    allowed.insert(allowed.begin(), "type");
    m.check_keys(allowed, " for " + t.type);
  }
  for (const auto& [key, c] : v.entries) {
    if (key == "type") continue;
    std::vector<double> vals;
    bool b;
    double d;
    bool ok = true;
    if (c.kind == Value::Kind::Scalar && !c.quoted && parse_bool_text(c.text, b)) {
      vals.push_back(b ? 1 : 0);
    } else if (is_number(c)) {
      parse_float_text(c.text, d);
      vals.push_back(d);
    } else if (c.kind == Value::Kind::Seq) {
      for (const Value& e : c.items) {
        if (is_number(e)) {
          parse_float_text(e.text, d);
          vals.push_back(d);
        } else if (e.kind == Value::Kind::Scalar && !e.quoted && parse_bool_text(e.text, b)) {
          vals.push_back(b ? 1 : 0);
        } else {
          ok = false;
        }
      }
    } else {
      ok = false;
    }
    if (!ok)
      config_fail(c.file, join(path, key), "expected a number, a boolean or a list of numbers, got ", describe(c));
    t.args[key] = vals;
  }
  // Shapes and ranges of the arguments whose semantics are fixed (§4.4).
  if (t.type == "RandomPaddingCrop") {
    if (!m.has("crop_size")) m.missing("crop_size", " (RandomPaddingCrop needs [width, height])");
    m.positive_ints("crop_size", 2);
  }
  if (t.type == "ResizeStepScaling") {
    for (const char* k : {"min_scale_factor", "max_scale_factor", "scale_step_size"})
      if (auto x = m.number(k); x && *x < 0) m.bad(k, "expected a number >= 0, got ", *x);
    const double lo = m.number("min_scale_factor").value_or(0.75), hi = m.number("max_scale_factor").value_or(1.25);
    if (lo > hi) m.bad("min_scale_factor", "min_scale_factor ", lo, " is larger than max_scale_factor ", hi);
  }
  if (t.type == "RandomHorizontalFlip" || t.type == "RandomVerticalFlip") {
    if (auto p = m.number("prob"); p && (*p < 0 || *p > 1)) m.bad("prob", "expected a probability in [0, 1], got ", *p);
  }
  if (t.type == "RandomDistort") {
    for (const char* k : {"brightness_prob", "contrast_prob", "saturation_prob", "hue_prob", "sharpness_prob"})
      if (auto p = m.number(k); p && (*p < 0 || *p > 1)) m.bad(k, "expected a probability in [0, 1], got ", *p);
    for (const char* k : {"brightness_range", "contrast_range", "saturation_range", "hue_range", "sharpness_range"})
      if (auto x = m.number(k); x && *x < 0) m.bad(k, "expected a number >= 0, got ", *x);
  }
  if (t.type == "Normalize") {
    for (const char* k : {"mean", "std"}) m.numbers(k);
    if (auto s = m.numbers("std"))
      for (double x : *s)
        if (x == 0) m.bad("std", "expected non-zero values, got ", describe(*m.value("std")));
  }
  return t;
}

const std::vector<std::string> kDatasetKeys = {"type",         "dataset_root", "train_path", "val_path",
                                               "test_path",    "separator",    "mode",       "num_classes",
                                               "ignore_index", "img_channels", "transforms"};
const std::vector<std::string> kCityscapesKeys = {"type", "dataset_root", "transforms",
                                                  "mode", "num_classes",  "ignore_index"};

data::DatasetSpec parse_dataset(const Value& v, const std::string& path, const std::string& default_mode) {
  const Map m(v, path);
  data::DatasetSpec d;
  d.where = path;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (Dataset or Cityscapes)");
  d.type = *type;
  if (d.type == "Dataset") {
    m.check_keys(kDatasetKeys, " for a Dataset");
  } else if (d.type == "Cityscapes") {
    m.check_keys(kCityscapesKeys, " for Cityscapes");
  } else {
    m.bad("type", "unknown dataset type '", d.type, "' (supported: Dataset, Cityscapes)");
  }
  const auto root = m.string("dataset_root");
  if (!root) m.missing("dataset_root");
  d.dataset_root = *root;
  d.mode = m.string("mode").value_or(default_mode);
  if (d.mode != "train" && d.mode != "val" && d.mode != "test")
    m.bad("mode", "expected train, val or test, got '", d.mode, "'");

  if (d.type == "Cityscapes") {
    // paddleseg/datasets/cityscapes.py: NUM_CLASSES = 19, IGNORE_INDEX = 255, fixed.
    d.num_classes = 19;
    if (auto n = m.integer("num_classes"); n && *n != 19) m.bad("num_classes", "Cityscapes has 19 classes, got ", *n);
    if (auto n = m.integer("ignore_index"); n && *n != 255)
      m.bad("ignore_index", "Cityscapes ignores label 255, got ", *n);
  } else {
    d.train_path = m.string("train_path").value_or("");
    d.val_path = m.string("val_path").value_or("");
    d.test_path = m.string("test_path").value_or("");
    d.separator = m.string("separator").value_or(" ");
    if (d.separator.empty()) m.bad("separator", "expected a non-empty separator");
    const auto n = m.integer("num_classes");
    if (!n) m.missing("num_classes", " (a Dataset must say how many classes its labels have)");
    if (*n < 1) m.bad("num_classes", "expected a positive integer, got ", *n);
    d.num_classes = *n;
    d.ignore_index = m.integer("ignore_index").value_or(255);
    const int64_t ch = m.integer("img_channels").value_or(3);
    if (ch < 1 || ch > 4) m.bad("img_channels", "expected 1 to 4 channels, got ", ch);
    d.img_channels = (int)ch;
    // PaddleSeg's Dataset: "When `mode` is 'train', `train_path` is necessary", etc.
    const std::string need = d.mode + "_path";
    if ((d.mode == "train" && d.train_path.empty()) || (d.mode == "val" && d.val_path.empty()) ||
        (d.mode == "test" && d.test_path.empty()))
      m.missing(need, " (required when mode is '" + d.mode + "')");
  }

  const Value* tr = m.value("transforms");
  if (!tr) m.missing("transforms", " (a list, e.g. [{type: Normalize}])");
  if (tr->kind != Value::Kind::Seq)
    config_fail(tr->file, m.at("transforms"), "expected a list of transforms, got ", describe(*tr));
  for (size_t i = 0; i < tr->items.size(); ++i)
    d.transforms.push_back(parse_transform(tr->items[i], index_path(m.at("transforms"), i)));
  return d;
}

OptimizerSpec parse_optimizer(const Value& v) {
  const Map m(v, "optimizer");
  m.check_keys({"type", "momentum", "weight_decay"});
  OptimizerSpec o;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (SGD)");
  o.type = *type;
  if (o.type != "SGD" && o.type != "Momentum")
    m.bad("type", "optimizer '", o.type, "' is not supported (supported: SGD with momentum, Momentum)");
  // PaddleSeg's builder turns SGD + momentum into Momentum; plain SGD has no momentum.
  o.momentum = m.number("momentum").value_or(o.type == "SGD" ? 0.0 : 0.9);
  if (o.momentum < 0 || o.momentum >= 1) m.bad("momentum", "expected a value in [0, 1), got ", o.momentum);
  o.weight_decay = m.number("weight_decay").value_or(0.0);
  if (o.weight_decay < 0) m.bad("weight_decay", "expected a number >= 0, got ", o.weight_decay);
  return o;
}

LRSpec parse_lr(const Value& v, int64_t iters) {
  const Map m(v, "lr_scheduler");
  LRSpec s;
  const auto type = m.string("type");
  if (!type) m.missing("type", " (PolynomialDecay or PiecewiseDecay)");
  s.type = *type;
  const std::vector<std::string> warm = {"warmup_iters", "warmup_start_lr"};
  if (s.type == "PolynomialDecay") {
    m.check_keys(
        {"type", "learning_rate", "end_lr", "power", "decay_steps", "cycle", "warmup_iters", "warmup_start_lr"},
        " for PolynomialDecay");
    const auto lr = m.number("learning_rate");
    if (!lr) m.missing("learning_rate");
    s.learning_rate = *lr;
    s.end_lr = m.number("end_lr").value_or(0.0);
    s.power = m.number("power").value_or(0.9);
    s.decay_steps = m.integer("decay_steps").value_or(0);
    if (m.boolean("cycle").value_or(false)) m.bad("cycle", "cycle: True is not supported");
    if (s.learning_rate < 0) m.bad("learning_rate", "expected a learning rate >= 0, got ", s.learning_rate);
    if (s.end_lr < 0) m.bad("end_lr", "expected a learning rate >= 0, got ", s.end_lr);
    if (s.power <= 0) m.bad("power", "expected a power > 0, got ", s.power);
    if (m.has("decay_steps") && s.decay_steps < 1)
      m.bad("decay_steps", "expected a positive integer, got ", s.decay_steps);
  } else if (s.type == "PiecewiseDecay") {
    m.check_keys({"type", "boundaries", "values", "warmup_iters", "warmup_start_lr"},
                 " for PiecewiseDecay (its rates are `values`)");
    const auto b = m.integers("boundaries");
    const auto vals = m.numbers("values", false);
    if (!b) m.missing("boundaries");
    if (!vals) m.missing("values");
    s.boundaries = *b;
    s.values = *vals;
    if (s.values.size() != s.boundaries.size() + 1)
      m.bad("values", "expected ", s.boundaries.size() + 1, " values (one more than boundaries), got ",
            s.values.size());
    for (size_t i = 0; i < s.boundaries.size(); ++i)
      if (s.boundaries[i] < 0 || (i > 0 && s.boundaries[i] <= s.boundaries[i - 1]))
        m.bad("boundaries", "expected increasing non-negative steps, got ", describe(*m.value("boundaries")));
    for (double x : s.values)
      if (x < 0) m.bad("values", "expected learning rates >= 0, got ", describe(*m.value("values")));
    s.learning_rate = s.values[0];
  } else {
    m.bad("type", "unknown lr_scheduler type '", s.type, "' (supported: PolynomialDecay, PiecewiseDecay)");
  }
  // PaddleSeg's builder: warmup_iters needs warmup_start_lr; both wrap the schedule in LinearWarmup.
  if (m.has("warmup_iters") != m.has("warmup_start_lr"))
    m.missing(m.has("warmup_iters") ? "warmup_start_lr" : "warmup_iters",
              " (warmup needs warmup_iters and warmup_start_lr)");
  s.warmup_iters = m.integer("warmup_iters").value_or(0);
  s.warmup_start_lr = m.number("warmup_start_lr").value_or(0.0);
  if (s.warmup_iters < 0) m.bad("warmup_iters", "expected an integer >= 0, got ", s.warmup_iters);
  if (s.warmup_start_lr < 0) m.bad("warmup_start_lr", "expected a learning rate >= 0, got ", s.warmup_start_lr);
  if (iters > 0 && s.warmup_iters >= iters)
    m.bad("warmup_iters", "expected fewer warmup iterations than iters (", iters, "), got ", s.warmup_iters);
  return s;
}

LossSpec parse_loss(const Value& v, int64_t ignore_index, int64_t num_classes) {
  const Map m(v, "loss");
  m.check_keys({"types", "coef"});
  const Value* types = m.value("types");
  if (!types) m.missing("types", " (a list like [{type: CrossEntropyLoss}])");
  if (types->kind != Value::Kind::Seq || types->items.empty())
    config_fail(types->file, m.at("types"), "expected a non-empty list of losses, got ", describe(*types));
  const auto coef = m.numbers("coef", false);
  if (!coef) m.missing("coef", " (one weight per model output, e.g. [1, 1, 1])");
  LossSpec loss;
  loss.coef = *coef;
  for (size_t i = 0; i < types->items.size(); ++i) {
    const std::string p = index_path(m.at("types"), i);
    const Map t(types->items[i], p);
    LossTermSpec term;
    term.where = p;
    const auto type = t.string("type");
    if (!type) t.missing("type", " (CrossEntropyLoss or OhemCrossEntropyLoss)");
    term.type = *type;
    if (term.type == "CrossEntropyLoss") {
      t.check_keys({"type", "weight", "ignore_index", "top_k_percent_pixels", "avg_non_ignore"},
                   " for CrossEntropyLoss");
      term.top_k_percent_pixels = t.number("top_k_percent_pixels").value_or(1.0);
      if (term.top_k_percent_pixels <= 0 || term.top_k_percent_pixels > 1)
        t.bad("top_k_percent_pixels", "expected a fraction in (0, 1], got ", term.top_k_percent_pixels);
      term.avg_non_ignore = t.boolean("avg_non_ignore").value_or(true);
    } else if (term.type == "OhemCrossEntropyLoss") {
      t.check_keys({"type", "thresh", "min_kept", "ignore_index", "weight"}, " for OhemCrossEntropyLoss");
      term.thresh = t.number("thresh").value_or(0.7);
      if (term.thresh <= 0 || term.thresh > 1) t.bad("thresh", "expected a probability in (0, 1], got ", term.thresh);
      term.min_kept = t.integer("min_kept").value_or(10000);
      if (term.min_kept < 0) t.bad("min_kept", "expected an integer >= 0, got ", term.min_kept);
    } else {
      t.bad("type", "unknown loss type '", term.type, "' (supported: CrossEntropyLoss, OhemCrossEntropyLoss)");
    }
    if (auto w = t.numbers("weight", false)) {
      for (double x : *w)
        if (x < 0) t.bad("weight", "expected class weights >= 0, got ", describe(*t.value("weight")));
      if (num_classes > 0 && (int64_t)w->size() != num_classes)
        t.bad("weight", "expected ", num_classes, " class weights (num_classes), got ", w->size());
      term.weight = *w;
    }
    // config_checker: ignore_index is injected from the data set; a different value is an error.
    term.ignore_index = t.integer("ignore_index").value_or(ignore_index);
    if (term.ignore_index != ignore_index)
      t.bad("ignore_index", "the loss ignores ", term.ignore_index, " but the dataset's ignore_index is ",
            ignore_index);
    loss.terms.push_back(term);
  }
  // DefaultLossRule: one type and n coefs = that type n times.
  if (loss.terms.size() == 1 && loss.coef.size() > 1) loss.terms.resize(loss.coef.size(), loss.terms[0]);
  if (loss.terms.size() != loss.coef.size())
    m.bad("coef", "expected ", loss.terms.size(), " coefficients (one per loss type), got ", loss.coef.size());
  if (loss.coef.empty()) m.bad("coef", "expected at least one coefficient");
  return loss;
}

const std::vector<std::string> kModelKeys = {
    "type",      "backbone",    "num_classes",        "backbone_indices", "arm_type",  "cm_bin_sizes",
    "cm_out_ch", "arm_out_chs", "seg_head_inter_chs", "resize_mode",      "pretrained"};

nn::SegModelSpec parse_model(const Value& v) {
  const Map m(v, "model");
  m.check_keys(kModelKeys, " for PPLiteSeg");
  nn::SegModelSpec s;
  s.where = "model";
  const auto type = m.string("type");
  if (!type) m.missing("type", " (PPLiteSeg)");
  s.type = *type;
  if (s.type != "PPLiteSeg") m.bad("type", "unknown model type '", s.type, "' (supported: PPLiteSeg)");
  const Value* bb = m.value("backbone");
  if (!bb) m.missing("backbone", " (e.g. {type: STDC2})");
  const Map b(*bb, m.at("backbone"));
  b.check_keys({"type", "pretrained"}, " for an STDC backbone");
  const auto bt = b.string("type");
  if (!bt) b.missing("type", " (STDC1 or STDC2)");
  s.backbone = *bt;
  if (s.backbone != "STDC1" && s.backbone != "STDC2")
    b.bad("type", "unknown backbone '", s.backbone, "' (supported: STDC1, STDC2)");
  s.backbone_pretrained = b.string("pretrained").value_or("");
  s.pretrained = m.string("pretrained").value_or("");
  if (auto n = m.integer("num_classes")) {
    if (*n < 1) m.bad("num_classes", "expected a positive integer, got ", *n);
    s.num_classes = *n;
  }
  if (auto x = m.positive_ints("backbone_indices")) {
    for (int i : *x)
      if (i > 4)
        m.bad("backbone_indices", "expected indices of the STDC stages 0..4, got ",
              describe(*m.value("backbone_indices")));
    s.backbone_indices = *x;
  }
  if (auto x = m.positive_ints("cm_bin_sizes")) s.cm_bin_sizes = *x;
  if (auto x = m.positive_ints("arm_out_chs")) s.arm_out_chs = *x;
  if (auto x = m.positive_ints("seg_head_inter_chs")) s.seg_head_inter_chs = *x;
  if (auto x = m.integer("cm_out_ch")) {
    if (*x < 1) m.bad("cm_out_ch", "expected a positive integer, got ", *x);
    s.cm_out_ch = (int)*x;
  }
  s.arm_type = m.string("arm_type").value_or(s.arm_type);
  s.resize_mode = m.string("resize_mode").value_or(s.resize_mode);
  // PP-LiteSeg pairs backbone_indices, arm_out_chs and seg_head_inter_chs index by index.
  if (s.arm_out_chs.size() != s.backbone_indices.size())
    m.bad("arm_out_chs", "expected ", s.backbone_indices.size(), " entries (one per backbone_indices entry), got ",
          s.arm_out_chs.size());
  if (s.seg_head_inter_chs.size() != s.arm_out_chs.size())
    m.bad("seg_head_inter_chs", "expected ", s.arm_out_chs.size(), " entries (one per arm_out_chs entry), got ",
          s.seg_head_inter_chs.size());
  return s;
}

TestConfig parse_test_config(const Value& v) {
  const Map m(v, "test_config");
  m.check_keys({"aug_eval", "scales", "flip_horizontal", "flip_vertical", "is_slide", "crop_size", "stride"});
  TestConfig t;
  t.aug_eval = m.boolean("aug_eval").value_or(false);
  if (auto s = m.numbers("scales")) {
    if (s->empty()) m.bad("scales", "expected at least one scale");
    for (double x : *s)
      if (x <= 0) m.bad("scales", "expected scales > 0, got ", describe(*m.value("scales")));
    t.scales = *s;
  }
  t.flip_horizontal = m.boolean("flip_horizontal").value_or(false);
  t.flip_vertical = m.boolean("flip_vertical").value_or(false);
  t.is_slide = m.boolean("is_slide").value_or(false);
  if (auto c = m.positive_ints("crop_size", 2)) t.crop_size = *c;
  if (auto c = m.positive_ints("stride", 2)) t.stride = *c;
  if (t.is_slide && t.crop_size.empty()) m.missing("crop_size", " (is_slide needs crop_size [w, h])");
  if (t.is_slide && t.stride.empty()) m.missing("stride", " (is_slide needs stride [w, h])");
  return t;
}

Value scalar_value(const std::string& text, const std::string& origin) {
  Value v;
  v.kind = Value::Kind::Scalar;
  v.text = text;
  v.file = origin;
  return v;
}

// The shortest text that reads back as exactly `d`.
std::string fmt_double(double d) {
  std::string t;
  for (int prec = 6; prec <= 17; ++prec) {
    std::ostringstream s;
    s.precision(prec);
    s << d;
    t = s.str();
    if (std::strtod(t.c_str(), nullptr) == d) break;
  }
  // Keep it a YAML float (a dot or an exponent) so it reads back as a number.
  if (t.find_first_of(".eE") == std::string::npos && t.find_first_of("0123456789") != std::string::npos) t += ".0";
  return t;
}

}  // namespace

// ------------------------------------------------------------------------------------- loading

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& opts,
                              std::optional<int64_t> iters, std::optional<int64_t> batch_size,
                              std::optional<double> learning_rate) {
  std::vector<std::string> chain;
  Value root = load_file(path, chain, "");

  for (const std::string& item : opts) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("--opts: '" + item + "': expected key=value, e.g. batch_size=8");
    const std::string key = item.substr(0, eq);
    apply_override(root, key, parse_yaml_text(item.substr(eq + 1), "--opts", key), "--opts");
  }
  if (iters) apply_override(root, "iters", scalar_value(std::to_string(*iters), "--iters"), "--iters");
  if (batch_size)
    apply_override(root, "batch_size", scalar_value(std::to_string(*batch_size), "--batch_size"), "--batch_size");
  if (learning_rate)
    apply_override(root, "lr_scheduler.learning_rate", scalar_value(fmt_double(*learning_rate), "--learning_rate"),
                   "--learning_rate");
  strip_inherited(root, "");

  TrainConfig cfg;
  cfg.path = path;
  {
    YAML::Emitter out;
    emit(out, root);
    cfg.merged_yaml = std::string(out.c_str()) + "\n";
  }

  const Map top(root, "");
  top.check_keys(kTopKeys);
  // `export` (deployment transforms) and `to_static_training` (a Paddle compilation switch) do not
  // change training; they are accepted and ignored so PaddleSeg configs load.
  top.boolean("to_static_training");

  cfg.batch_size = top.integer("batch_size").value_or(1);
  if (cfg.batch_size < 1) top.bad("batch_size", "expected a positive integer, got ", cfg.batch_size);
  cfg.iters = top.integer("iters").value_or(0);
  if (top.has("iters") && cfg.iters < 1) top.bad("iters", "expected a positive integer, got ", cfg.iters);

  if (const Value* d = top.value("train_dataset")) {
    cfg.train_dataset = parse_dataset(*d, "train_dataset", "train");
    cfg.has_train_dataset = true;
  }
  if (const Value* d = top.value("val_dataset")) {
    cfg.val_dataset = parse_dataset(*d, "val_dataset", "val");
    cfg.has_val_dataset = true;
  }
  if (cfg.has_train_dataset && cfg.has_val_dataset) {
    // DefaultSyncNumClassesRule / ignore index: the data sets must agree.
    const Map vd(*top.value("val_dataset"), "val_dataset");
    if (cfg.val_dataset.num_classes != cfg.train_dataset.num_classes)
      vd.bad("num_classes", "val_dataset has ", cfg.val_dataset.num_classes, " classes but train_dataset has ",
             cfg.train_dataset.num_classes);
    if (cfg.val_dataset.ignore_index != cfg.train_dataset.ignore_index)
      vd.bad("ignore_index", "val_dataset ignores ", cfg.val_dataset.ignore_index, " but train_dataset ignores ",
             cfg.train_dataset.ignore_index);
  }
  const data::DatasetSpec* ds = cfg.has_train_dataset ? &cfg.train_dataset
                                : cfg.has_val_dataset ? &cfg.val_dataset
                                                      : nullptr;

  if (const Value* o = top.value("optimizer")) cfg.optimizer = parse_optimizer(*o);
  if (const Value* l = top.value("lr_scheduler")) cfg.lr_scheduler = parse_lr(*l, cfg.iters);

  if (const Value* mv = top.value("model")) {
    cfg.model = parse_model(*mv);
    cfg.has_model = true;
    const Map model_map(*mv, "model");
    if (cfg.model.num_classes == 0) {
      if (!ds) model_map.missing("num_classes", " (not in the model block and no dataset gives it)");
      cfg.model.num_classes = ds->num_classes;  // PaddleSeg injects the data set's num_classes
    } else if (ds && cfg.model.num_classes != ds->num_classes) {
      model_map.bad("num_classes", "the model has ", cfg.model.num_classes, " classes but ", ds->where, " has ",
                    ds->num_classes);
    }
  }

  if (const Value* l = top.value("loss")) {
    cfg.loss = parse_loss(*l, ds ? ds->ignore_index : 255, cfg.has_model ? cfg.model.num_classes : 0);
    // PP-LiteSeg returns one logit per seg head in training; PaddleSeg requires one loss per logit.
    const size_t outputs = cfg.model.arm_out_chs.size();
    if (cfg.has_model && cfg.loss.coef.size() != outputs)
      Map(*l, "loss")
          .bad("coef", "PPLiteSeg has ", outputs, " outputs in training (one per arm_out_chs entry), so ", outputs,
               " loss coefficients are needed, got ", cfg.loss.coef.size());
  }
  if (const Value* t = top.value("test_config")) cfg.test_config = parse_test_config(*t);
  return cfg;
}

void check_trainable(const TrainConfig& cfg) {
  if (!cfg.has_model)
    throw ConfigError(cfg.path + ": model: missing (e.g. {type: PPLiteSeg, backbone: {type: STDC2}})");
  if (!cfg.has_train_dataset) throw ConfigError(cfg.path + ": train_dataset: missing (needed for training)");
  if (cfg.iters < 1) throw ConfigError(cfg.path + ": iters: missing (needed for training; or pass --iters)");
  if (cfg.loss.terms.empty()) throw ConfigError(cfg.path + ": loss: missing (needed for training)");
}

}  // namespace engine::train
