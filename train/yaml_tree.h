// The generic YAML layer under the training configs (PaddleSeg's in config.cpp, PaddleX detection's in
// det_config.cpp): a small tree of values that remembers the file (or flag) every node came from,
// loading with `_base_` / `_inherited_` merging, `--opts key.sub[i]=value` overrides, the merged YAML
// text, and typed getters whose errors are one line "<file>: <key.path>: <expected, found>".
// Semantics: PaddleSeg paddleseg/cvlibs/config.py (the merge rules, --opts);
// scalars resolve as PyYAML's YAML 1.1 (PaddleSeg and PaddleX load with PyYAML), plus exponents without
// a dot ("1e-5") read as numbers. yaml-cpp only parses (in yaml_tree.cpp); nothing here exposes it.
// Tested through both schemas by tests/test_config.cpp (merge rules on hand-written files, --opts,
// error messages and the files they name, the merged YAML).
#pragma once
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace engine::train {

// Thrown for every config or command-line problem; the programs map it to exit code 2.
class ConfigError : public engine::Error {
 public:
  using engine::Error::Error;
};

// One node of a loaded config. Scalars keep their text as written and are typed only when read, so
// `1e-5`, `True` or `'8'` (quoted = always a string) mean what PyYAML makes of them.
struct ConfigValue {
  enum class Kind { Null, Scalar, Seq, Map };
  Kind kind = Kind::Null;
  std::string text;                                          // Scalar: as written
  bool quoted = false;                                       // Scalar: quoted or tagged !!str, so always a string
  std::vector<ConfigValue> items;                            // Seq
  std::vector<std::pair<std::string, ConfigValue>> entries;  // Map, in file order
  std::string file;                                          // where this node came from (for messages)

  // Declared here and defaulted in yaml_tree.cpp: `entries` holds pairs of this still-incomplete type,
  // and implicit inline members would make std::pair ask whether ConfigValue is destructible while
  // ConfigValue is being defined, a cycle GCC resolves and clang rejects.
  ConfigValue();
  ~ConfigValue();
  ConfigValue(const ConfigValue&);
  ConfigValue(ConfigValue&&) noexcept;
  ConfigValue& operator=(const ConfigValue&);
  ConfigValue& operator=(ConfigValue&&) noexcept;

  bool is_map() const { return kind == Kind::Map; }
  const ConfigValue* find(const std::string& key) const {
    for (const auto& [k, v] : entries)
      if (k == key) return &v;
    return nullptr;
  }
  ConfigValue* find(const std::string& key) {
    for (auto& [k, v] : entries)
      if (k == key) return &v;
    return nullptr;
  }
};

ConfigValue empty_config_map(const std::string& origin);
// An unquoted scalar with the given text, e.g. a typed flag's value.
ConfigValue scalar_value(const std::string& text, const std::string& origin);

// Key paths for messages: key_path("a", "b") = "a.b", key_path("", "b") = "b"; index_path("a", 2) = "a[2]".
std::string key_path(const std::string& path, const std::string& key);
std::string index_path(const std::string& path, size_t i);

// Throws ConfigError "<file>: <path>: <what...>" (path "" reads "(top level)").
template <class... A>
[[noreturn]] void config_fail(const std::string& file, const std::string& path, const A&... what) {
  std::ostringstream s;
  s << file << ": " << (path.empty() ? "(top level)" : path) << ": ";
  (s << ... << what);
  throw ConfigError(s.str());
}

// " (did you mean 'x'?)" for the closest name of `known` within a small edit distance, else "".
std::string did_you_mean(const std::string& name, const std::vector<std::string>& known);
// "a, b, c"
std::string list_str(const std::vector<std::string>& names);

// The scalar grammar (PyYAML's YAML 1.1 resolution of booleans, integers and floats).
bool parse_yaml_bool(const std::string& text, bool& out);
bool parse_yaml_int(const std::string& text, int64_t& out);
bool parse_yaml_float(const std::string& text, double& out);
bool is_number(const ConfigValue& v);  // an unquoted scalar that reads as a number
bool is_bool(const ConfigValue& v);    // an unquoted scalar that reads as a boolean

// How a value reads in a message: numbers and booleans plain, strings quoted, lists in flow style.
std::string describe(const ConfigValue& v);

// Parses a YAML text (an --opts value, a flag) into a tree whose nodes name `origin`; `path` is the
// key the text is for (messages).
ConfigValue parse_yaml_text(const std::string& text, const std::string& origin, const std::string& path);

// Loads `path` and, recursively, its `_base_` files (paths relative to the including file; earlier
// bases win over later ones, the file over its bases; dicts merge key by key, lists and scalars
// replace; `_inherited_: False` in a dict drops the base's dict for that key). `_inherited_` keys stay
// in the tree until strip_inherited(). Missing files, cycles and YAML syntax errors are ConfigErrors.
ConfigValue load_config_file(const std::string& path);

// Sets root[key] = value (`key` as "a.b[2].c"; mappings on the way are created, list indices must
// exist). `origin` is named in errors. Throws ConfigError for a malformed key or a path through a
// non-mapping / non-list.
void apply_override(ConfigValue& root, const std::string& key, const ConfigValue& value, const std::string& origin);

// Applies --opts "key.sub=value" items in order (value parsed as YAML, origin "--opts").
void apply_opts(ConfigValue& root, const std::vector<std::string>& opts);

// Validates and removes every `_inherited_` key (after all overrides).
void strip_inherited(ConfigValue& v, const std::string& path = "");

// The tree as YAML (block style; lists of scalars in flow style), ending with a newline.
std::string emit_yaml(const ConfigValue& v);

// The shortest text that reads back as exactly `d`, always with a dot or an exponent (a YAML float).
std::string fmt_double(double d);

// A mapping at a key path with typed getters. Every getter names the key path and the file the value
// came from; `check_keys` rejects keys that are not in the allowed list (with a did-you-mean). A key
// with no value ("key:") counts as absent.
class ConfigMap {
 public:
  ConfigMap(const ConfigValue& v, std::string path);
  const std::string& path() const { return path_; }
  const std::string& file() const { return v_.file; }
  const ConfigValue& node() const { return v_; }
  const ConfigValue* value(const std::string& key) const;
  bool has(const std::string& key) const { return value(key) != nullptr; }
  std::string at(const std::string& key) const { return key_path(path_, key); }

  void check_keys(const std::vector<std::string>& allowed, const std::string& context = "") const;
  [[noreturn]] void missing(const std::string& key, const std::string& why = "") const;

  std::optional<double> number(const std::string& key) const;
  std::optional<int64_t> integer(const std::string& key) const;
  std::optional<bool> boolean(const std::string& key) const;
  std::optional<std::string> string(const std::string& key) const;
  // A list of numbers; a single number is a 1-element list when scalar_ok (PaddleSeg accepts `scales: 0.5`).
  std::optional<std::vector<double>> numbers(const std::string& key, bool scalar_ok = true) const;
  std::optional<std::vector<int64_t>> integers(const std::string& key) const;
  // A list of positive ints that fit an int (channel counts, sizes); exact_len 0 = any non-empty length.
  std::optional<std::vector<int>> positive_ints(const std::string& key, size_t exact_len = 0) const;

  // Value-range failures name the value's own file.
  template <class... A>
  [[noreturn]] void bad(const std::string& key, const A&... what) const {
    const ConfigValue* c = value(key);
    config_fail(c ? c->file : v_.file, at(key), what...);
  }

 private:
  const ConfigValue& v_;
  std::string path_;
};

}  // namespace engine::train
