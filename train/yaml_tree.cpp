// The generic YAML layer of the training configs (see yaml_tree.h): yaml-cpp -> ConfigValue, the
// PyYAML-like scalar grammar, `_base_` / `_inherited_` merging, --opts key paths, emitting, typed getters.
// Semantics: PaddleSeg paddleseg/cvlibs/config.py. Tested by
// tests/test_config.cpp.
//
// yaml-cpp only parses: the YAML is copied at once into the ConfigValue tree, which remembers for every
// node the file (or flag) it came from, so that an error in a value inherited from a `_base_` file names
// that file. (yaml-cpp nodes are also reference-like handles whose assignment rebinds shared data, which
// makes in-place merging error-prone.)
#include "train/yaml_tree.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

namespace engine::train {
namespace {

namespace fs = std::filesystem;

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

std::string list_str(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

ConfigValue::ConfigValue() = default;
ConfigValue::~ConfigValue() = default;
ConfigValue::ConfigValue(const ConfigValue&) = default;
ConfigValue::ConfigValue(ConfigValue&&) noexcept = default;
ConfigValue& ConfigValue::operator=(const ConfigValue&) = default;
ConfigValue& ConfigValue::operator=(ConfigValue&&) noexcept = default;

ConfigValue empty_config_map(const std::string& origin) {
  ConfigValue v;
  v.kind = ConfigValue::Kind::Map;
  v.file = origin;
  return v;
}

ConfigValue scalar_value(const std::string& text, const std::string& origin) {
  ConfigValue v;
  v.kind = ConfigValue::Kind::Scalar;
  v.text = text;
  v.file = origin;
  return v;
}

std::string key_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }
std::string index_path(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

// ------------------------------------------------------------------------------- scalar grammar
// YAML 1.1 as PyYAML resolves it (PaddleSeg loads with PyYAML), plus exponents without a dot
// ("1e-5"), which PyYAML would read as a string but every user means as a number.

bool parse_yaml_bool(const std::string& s, bool& out) {
  static const std::set<std::string> t{"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> f{"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (t.count(s)) return out = true, true;
  if (f.count(s)) return out = false, true;
  return false;
}

bool parse_yaml_int(const std::string& s, int64_t& out) {
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

bool parse_yaml_float(const std::string& s, double& out) {
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

bool is_number(const ConfigValue& v) {
  double d;
  return v.kind == ConfigValue::Kind::Scalar && !v.quoted && parse_yaml_float(v.text, d);
}

// How a value reads in a message: numbers and booleans plain, strings quoted, lists in flow style.
std::string describe(const ConfigValue& v) {
  switch (v.kind) {
    case ConfigValue::Kind::Null:
      return "nothing (null)";
    case ConfigValue::Kind::Scalar: {
      bool b;
      if (!v.quoted && (is_number(v) || parse_yaml_bool(v.text, b))) return v.text;
      return "'" + v.text + "'";
    }
    case ConfigValue::Kind::Seq: {
      std::string s = "[";
      for (size_t i = 0; i < v.items.size(); ++i) s += (i ? ", " : "") + describe(v.items[i]);
      return s + "]";
    }
    case ConfigValue::Kind::Map: {
      std::string s = "{";
      for (size_t i = 0; i < v.entries.size(); ++i) s += (i ? ", " : "") + v.entries[i].first + ": ...";
      return s + "}";
    }
  }
  return "?";
}

bool is_bool(const ConfigValue& v) {
  bool b;
  return v.kind == ConfigValue::Kind::Scalar && !v.quoted && parse_yaml_bool(v.text, b);
}

namespace {

// ---------------------------------------------------------------------------- yaml-cpp -> ConfigValue

ConfigValue from_yaml(const YAML::Node& n, const std::string& file, const std::string& path) {
  ConfigValue v;
  v.file = file;
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      v.kind = ConfigValue::Kind::Null;
      break;
    case YAML::NodeType::Scalar:
      v.kind = ConfigValue::Kind::Scalar;
      v.text = n.Scalar();
      v.quoted = n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str";
      break;
    case YAML::NodeType::Sequence:
      v.kind = ConfigValue::Kind::Seq;
      for (size_t i = 0; i < n.size(); ++i) v.items.push_back(from_yaml(n[i], file, index_path(path, i)));
      break;
    case YAML::NodeType::Map:
      v.kind = ConfigValue::Kind::Map;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (!it->first.IsScalar()) config_fail(file, path, "mapping keys must be plain names");
        const std::string key = it->first.Scalar();
        if (v.find(key)) config_fail(file, key_path(path, key), "duplicate key");
        v.entries.emplace_back(key, from_yaml(it->second, file, key_path(path, key)));
      }
      break;
  }
  return v;
}

}  // namespace

ConfigValue parse_yaml_text(const std::string& text, const std::string& origin, const std::string& path) {
  try {
    return from_yaml(YAML::Load(text), origin, path);
  } catch (const YAML::Exception& e) {
    config_fail(origin, path, "cannot parse value '", text, "' as YAML: ", e.msg);
  }
}

namespace {

// --------------------------------------------------------------------------------------- merging

// `_inherited_` must be a boolean; false means "do not merge with the base's dict".
bool inherits(const ConfigValue& map, const std::string& path) {
  const ConfigValue* f = map.find("_inherited_");
  if (!f) return true;
  bool b;
  if (f->kind != ConfigValue::Kind::Scalar || f->quoted || !parse_yaml_bool(f->text, b))
    config_fail(f->file, key_path(path, "_inherited_"), "expected True or False, got ", describe(*f));
  return b;
}

// PaddleSeg's _update_dic: `over` wins; dicts merge recursively unless over says _inherited_: False.
void merge_into(ConfigValue& base, const ConfigValue& over, const std::string& path) {
  base.file = over.file;
  for (const auto& [key, v] : over.entries) {
    if (key == "_inherited_") continue;
    const std::string p = key_path(path, key);
    ConfigValue* b = base.find(key);
    if (b && b->is_map() && v.is_map() && inherits(v, p)) {
      merge_into(*b, v, p);
    } else if (b) {
      *b = v;
    } else {
      base.entries.emplace_back(key, v);
    }
  }
}

}  // namespace

void strip_inherited(ConfigValue& v, const std::string& path) {
  if (v.is_map()) {
    inherits(v, path);  // validates the value
    std::erase_if(v.entries, [](const auto& e) { return e.first == "_inherited_"; });
    for (auto& [k, c] : v.entries) strip_inherited(c, key_path(path, k));
  } else if (v.kind == ConfigValue::Kind::Seq) {
    for (size_t i = 0; i < v.items.size(); ++i) strip_inherited(v.items[i], index_path(path, i));
  }
}

namespace {

std::string normal_key(const fs::path& p) {
  std::error_code ec;
  const fs::path c = fs::weakly_canonical(p, ec);
  return (ec ? fs::absolute(p).lexically_normal() : c).string();
}

// Loads `path` and, recursively, its `_base_` files. `chain` holds the files being loaded (cycles).
ConfigValue load_file(const std::string& path, std::vector<std::string>& chain, const std::string& includer) {
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
  ConfigValue own = from_yaml(node, path, "");
  if (own.kind == ConfigValue::Kind::Null) own = empty_config_map(path);  // an empty file
  if (!own.is_map()) config_fail(path, "", "expected a mapping of keys at the top level, got ", describe(own));

  std::vector<std::string> bases;
  if (const ConfigValue* b = own.find("_base_")) {
    if (b->kind == ConfigValue::Kind::Scalar) {
      bases.push_back(b->text);
    } else if (b->kind == ConfigValue::Kind::Seq) {
      for (size_t i = 0; i < b->items.size(); ++i) {
        if (b->items[i].kind != ConfigValue::Kind::Scalar)
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
  ConfigValue acc = own;
  if (!inherits(own, "")) bases.clear();
  for (const std::string& b : bases) {
    const std::string base_path = (fs::path(path).parent_path() / b).lexically_normal().string();
    ConfigValue base = load_file(base_path, chain, path);
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
      if (!parse_yaml_int(key.substr(j + 1, close - j - 1), idx) || idx < 0) bad();
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
void set_path(ConfigValue& root, const std::vector<Step>& steps, const ConfigValue& value, const std::string& origin) {
  ConfigValue* cur = &root;
  std::string path;
  for (size_t s = 0; s < steps.size(); ++s) {
    const Step& st = steps[s];
    const bool last = s + 1 == steps.size();
    if (st.index >= 0) {
      if (cur->kind != ConfigValue::Kind::Seq)
        config_fail(origin, path, "cannot index [", st.index, "]: the value is ", describe(*cur), ", not a list");
      if ((size_t)st.index >= cur->items.size())
        config_fail(origin, index_path(path, st.index), "index out of range (the list has ", cur->items.size(),
                    " entries)");
      path = index_path(path, st.index);
      cur = &cur->items[st.index];
    } else {
      if (cur->kind == ConfigValue::Kind::Null) *cur = empty_config_map(origin);
      if (!cur->is_map())
        config_fail(origin, path, "cannot set key '", st.key, "': the value is ", describe(*cur), ", not a mapping");
      path = key_path(path, st.key);
      ConfigValue* next = cur->find(st.key);
      if (!next) {
        cur->entries.emplace_back(st.key, last ? value : empty_config_map(origin));
        next = &cur->entries.back().second;
      }
      cur = next;
    }
    if (last) *cur = value;
  }
}

}  // namespace

ConfigValue load_config_file(const std::string& path) {
  std::vector<std::string> chain;
  return load_file(path, chain, "");
}

void apply_override(ConfigValue& root, const std::string& key, const ConfigValue& value, const std::string& origin) {
  std::vector<Step> steps = parse_key_path(key, key);
  set_path(root, steps, value, origin);
}

void apply_opts(ConfigValue& root, const std::vector<std::string>& opts) {
  for (const std::string& item : opts) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("--opts: '" + item + "': expected key=value, e.g. batch_size=8");
    const std::string key = item.substr(0, eq);
    apply_override(root, key, parse_yaml_text(item.substr(eq + 1), "--opts", key), "--opts");
  }
}

namespace {

// ---------------------------------------------------------------------------------- emitting

void emit(YAML::Emitter& out, const ConfigValue& v) {
  switch (v.kind) {
    case ConfigValue::Kind::Null:
      out << YAML::Null;
      break;
    case ConfigValue::Kind::Scalar:
      if (v.quoted) out << YAML::SingleQuoted;
      out << v.text;
      break;
    case ConfigValue::Kind::Seq: {
      const bool flat = std::all_of(v.items.begin(), v.items.end(), [](const ConfigValue& c) {
        return c.kind == ConfigValue::Kind::Scalar || c.kind == ConfigValue::Kind::Null;
      });
      if (flat) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const ConfigValue& c : v.items) emit(out, c);
      out << YAML::EndSeq;
      break;
    }
    case ConfigValue::Kind::Map:
      out << YAML::BeginMap;
      for (const auto& [k, c] : v.entries) {
        out << YAML::Key << k << YAML::Value;
        emit(out, c);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

std::string emit_yaml(const ConfigValue& v) {
  YAML::Emitter out;
  emit(out, v);
  return std::string(out.c_str()) + "\n";
}

// ------------------------------------------------------------------------------- typed reading

ConfigMap::ConfigMap(const ConfigValue& v, std::string path) : v_(v), path_(std::move(path)) {
  if (!v.is_map()) config_fail(v.file, path_, "expected a mapping of keys, got ", describe(v));
}

const ConfigValue* ConfigMap::value(const std::string& key) const {
  const ConfigValue* c = v_.find(key);
  return (c && c->kind == ConfigValue::Kind::Null) ? nullptr : c;  // "key:" with no value = absent
}

void ConfigMap::check_keys(const std::vector<std::string>& allowed, const std::string& context) const {
  for (const auto& [k, c] : v_.entries) {
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    config_fail(c.file, key_path(path_, k), "unknown key", context, did_you_mean(k, allowed),
                "; known keys: ", list_str(allowed));
  }
}

void ConfigMap::missing(const std::string& key, const std::string& why) const {
  config_fail(v_.file, at(key), "missing", why);
}

std::optional<double> ConfigMap::number(const std::string& key) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  double d;
  if (c->kind != ConfigValue::Kind::Scalar || c->quoted || !parse_yaml_float(c->text, d))
    config_fail(c->file, at(key), "expected a number, got ", describe(*c));
  return d;
}

std::optional<int64_t> ConfigMap::integer(const std::string& key) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  int64_t i = 0;
  if (c->kind != ConfigValue::Kind::Scalar || c->quoted || !parse_yaml_int(c->text, i))
    config_fail(c->file, at(key), "expected an integer, got ", describe(*c));
  return i;
}

std::optional<bool> ConfigMap::boolean(const std::string& key) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  bool b;
  if (c->kind != ConfigValue::Kind::Scalar || c->quoted || !parse_yaml_bool(c->text, b))
    config_fail(c->file, at(key), "expected True or False, got ", describe(*c));
  return b;
}

std::optional<std::string> ConfigMap::string(const std::string& key) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  if (c->kind != ConfigValue::Kind::Scalar) config_fail(c->file, at(key), "expected a string, got ", describe(*c));
  return c->text;
}

std::optional<std::vector<double>> ConfigMap::numbers(const std::string& key, bool scalar_ok) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  std::vector<double> out;
  double d;
  if (scalar_ok && is_number(*c)) {
    parse_yaml_float(c->text, d);
    return std::vector<double>{d};
  }
  if (c->kind != ConfigValue::Kind::Seq)
    config_fail(c->file, at(key), "expected a list of numbers, got ", describe(*c));
  for (const ConfigValue& e : c->items) {
    if (!is_number(e)) config_fail(c->file, at(key), "expected a list of numbers, got ", describe(*c));
    parse_yaml_float(e.text, d);
    out.push_back(d);
  }
  return out;
}

std::optional<std::vector<int64_t>> ConfigMap::integers(const std::string& key) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  std::vector<int64_t> out;
  int64_t i = 0;
  if (c->kind != ConfigValue::Kind::Seq)
    config_fail(c->file, at(key), "expected a list of integers, got ", describe(*c));
  for (const ConfigValue& e : c->items) {
    if (e.kind != ConfigValue::Kind::Scalar || e.quoted || !parse_yaml_int(e.text, i))
      config_fail(c->file, at(key), "expected a list of integers, got ", describe(*c));
    out.push_back(i);
  }
  return out;
}

std::optional<std::vector<int>> ConfigMap::positive_ints(const std::string& key, size_t exact_len) const {
  const ConfigValue* c = value(key);
  if (!c) return std::nullopt;
  std::vector<int> out;
  bool ok = c->kind == ConfigValue::Kind::Seq && (exact_len == 0 ? !c->items.empty() : c->items.size() == exact_len);
  for (size_t k = 0; ok && k < c->items.size(); ++k) {
    int64_t i = 0;
    const ConfigValue& e = c->items[k];
    ok = e.kind == ConfigValue::Kind::Scalar && !e.quoted && parse_yaml_int(e.text, i) && i > 0 && i < (1 << 30);
    out.push_back((int)i);
  }
  if (!ok) {
    const std::string n = exact_len ? std::to_string(exact_len) : "a list of";
    config_fail(c->file, at(key), "expected ", n, " positive integers, got ", describe(*c));
  }
  return out;
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

}  // namespace engine::train
