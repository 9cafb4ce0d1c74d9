#include "train/weights_file.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "base/error.h"
#include "train/pdparams.h"
#include "train/tar_archive.h"

namespace fs = std::filesystem;

namespace engine::train {
namespace {

LoadedTensors from_pdparams(PdparamsFile f, const std::string& path, const std::string& member) {
  LoadedTensors r;
  r.path = path;
  for (auto& t : f.tensors) r.tensors.emplace_back(std::move(t.name), std::move(t.tensor));
  r.metadata["source_format"] = "pdparams";
  r.metadata["pickle_protocol"] = std::to_string(f.protocol);
  if (!member.empty()) r.metadata["archive_member"] = member;
  return r;
}

LoadedTensors from_archive(const TarArchive& a, const std::string& path) {
  const TarMember& m = a.single_with_suffix(".pdparams");
  return from_pdparams(parse_pdparams(a.data(m), m.size, path + " (member " + m.name + ")"), path, m.name);
}

// PROTO opcode and a protocol number (paddle.save writes 2-4; the parser names any other).
bool is_pickle(const char* d, size_t n) { return n >= 2 && (unsigned char)d[0] == 0x80 && d[1] >= 0 && d[1] <= 5; }
// safetensors: u64 little-endian header length within the file, then the JSON header's '{'.
bool is_safetensors(const char* d, size_t n, uint64_t file_size) {
  if (n < 9 || d[8] != '{') return false;
  uint64_t len = 0;
  for (int k = 7; k >= 0; --k) len = (len << 8) | (unsigned char)d[k];
  return len <= file_size - 8;
}

LoadedTensors read_any(const std::string& path) {
  std::error_code ec;
  ENGINE_CHECK(fs::exists(path, ec), path, ": file not found");
  ENGINE_CHECK(!fs::is_directory(path, ec), path,
               ": is a folder, expected a weights file (.safetensors, .pdparams, .tar.gz holding a .pdparams)");
  std::string head(512, '\0');
  {
    std::ifstream in(path, std::ios::binary);
    ENGINE_CHECK(in, path, ": cannot open");
    in.read(head.data(), (std::streamsize)head.size());
    head.resize((size_t)in.gcount());
  }
  ENGINE_CHECK(!head.empty(), path, ": empty file");
  const uint64_t file_size = fs::file_size(path, ec);
  if (is_safetensors(head.data(), head.size(), file_size)) {
    LoadedTensors r = load_safetensors(path);
    r.metadata["source_format"] = "safetensors";
    return r;
  }
  if (is_pickle(head.data(), head.size())) {
    const std::string bytes = read_file_bytes(path);
    return from_pdparams(parse_pdparams(bytes.data(), bytes.size(), path), path, "");
  }
  if (is_gzip(head.data(), head.size())) {
    std::string bytes = read_file_bytes(path);
    std::string raw = gunzip(bytes.data(), bytes.size(), path);
    bytes.clear();
    bytes.shrink_to_fit();
    if (is_pickle(raw.data(), raw.size()))
      return from_pdparams(parse_pdparams(raw.data(), raw.size(), path + " (gunzipped)"), path, "");
    ENGINE_CHECK(looks_like_tar(raw.data(), raw.size()), path,
                 ": gzip data that is neither a tar archive nor a paddle.save pickle");
    return from_archive(TarArchive::from_bytes(std::move(raw), path), path);
  }
  if (looks_like_tar(head.data(), head.size())) return from_archive(TarArchive::open(path), path);
  std::string first;
  for (size_t k = 0; k < head.size() && k < 8; ++k) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%02x", (unsigned char)head[k]);
    first += (k ? " " : "") + std::string(buf);
  }
  fail(path, ": not a weights file: expected safetensors, a paddle.save .pdparams pickle, or a .tar/.tar.gz holding ",
       "one (first bytes: ", first, ")");
}

bool ends_with_dotted(const std::string& a, const std::string& b) {
  return a.size() > b.size() && a.compare(a.size() - b.size(), b.size(), b) == 0 && a[a.size() - b.size() - 1] == '.';
}

}  // namespace

LoadedTensors read_weights_file(const std::string& path, const std::string& key) {
  try {
    return read_any(path);
  } catch (const Error& e) {
    throw Error(key + ": " + e.what());
  }
}

nn::StateDict match_state_dict_by_suffix(const nn::StateDict& model, const LoadedTensors& file, std::ostream* log) {
  // Sorted keys as in match_state_dict (ties go to the first sorted file key, numpy's argmax).
  std::vector<size_t> mi(model.size()), wi(file.tensors.size());
  for (size_t k = 0; k < mi.size(); ++k) mi[k] = k;
  for (size_t k = 0; k < wi.size(); ++k) wi[k] = k;
  std::sort(mi.begin(), mi.end(), [&](size_t a, size_t b) { return model[a].first < model[b].first; });
  std::sort(wi.begin(), wi.end(), [&](size_t a, size_t b) { return file.tensors[a].first < file.tensors[b].first; });
  std::vector<bool> used(file.tensors.size(), false);
  std::map<size_t, std::string> taken_by;  // file index -> model key, among same-shape matches
  nn::StateDict out;
  for (size_t m : mi) {
    const std::string& mk = model[m].first;
    size_t best = SIZE_MAX, best_len = 0;
    for (size_t w : wi) {
      const std::string& wk_full = file.tensors[w].first;
      // match(): b = b[9:] when b starts with "backbone.res5"; the score stays len(original key).
      const std::string wk = wk_full.rfind("backbone.res5", 0) == 0 ? wk_full.substr(9) : wk_full;
      if ((mk == wk || ends_with_dotted(mk, wk)) && wk_full.size() > best_len) {
        best = w;
        best_len = wk_full.size();
      }
    }
    if (best == SIZE_MAX) continue;
    used[best] = true;
    const Tensor& t = file.tensors[best].second;
    if (t.shape() == model[m].second.shape()) {
      auto [it, fresh] = taken_by.emplace(best, mk);
      ENGINE_CHECK(fresh, file.path, ": ambiguous pretrained weight '", file.tensors[best].first,
                   "': it matches both '", it->second, "' and '", mk, "' in the model");
    }
    out.emplace_back(mk, t);
  }
  if (log) {
    std::vector<std::string> unused;
    for (size_t w : wi)
      if (!used[w]) unused.push_back(file.tensors[w].first);
    if (!unused.empty()) {
      *log << "WARNING: " << unused.size()
           << " keys in pretrained weight are not used in the model, and will not be loaded: ";
      for (size_t k = 0; k < unused.size() && k < 10; ++k) *log << (k ? ", " : "") << unused[k];
      if (unused.size() > 10) *log << ", ...";
      *log << "\n";
    }
  }
  return out;
}

}  // namespace engine::train
