// Launcher environment -> DistEnv, and the rank's CUDA device (semantics and priority in dist_env.h).
// Tested by tests/test_dist_env.cpp.
#include "train/dist_env.h"

#include <charconv>
#include <cstdlib>
#include <sstream>
#include <string_view>

#include "base/error.h"

namespace engine::train {
namespace {

// One launcher's variable names; an empty name means the launcher has no such variable.
struct Source {
  const char* launcher;
  const char* rank;
  const char* world;
  const char* world_alt;  // read when world is unset
  const char* local_rank;
  const char* local_rank_alt;  // read when local_rank is unset
  const char* local_size;
  const char* local_size_alt;  // read when local_size is unset; its first number counts
};

constexpr Source kSources[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "", "OMPI_COMM_WORLD_LOCAL_RANK", "",
     "OMPI_COMM_WORLD_LOCAL_SIZE", ""},
    {"paddle", "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM", "", "PADDLE_LOCAL_RANK", "PADDLE_RANK_IN_NODE",
     "PADDLE_LOCAL_SIZE", ""},
    {"torchrun-style", "RANK", "WORLD_SIZE", "", "LOCAL_RANK", "", "LOCAL_WORLD_SIZE", ""},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_LOCALID", "", "SLURM_NTASKS_PER_NODE",
     "SLURM_TASKS_PER_NODE"},
};

const char* lookup(const std::function<const char*(const char*)>& getenv_fn, const char* name) {
  return *name ? getenv_fn(name) : nullptr;
}

// The whole value (surrounding blanks allowed) as an int, or an error naming variable and value.
// leading_only: only the leading digits count (SLURM_TASKS_PER_NODE's "2(x3),1").
int parse_int(const char* launcher, const char* name, const char* value, bool leading_only = false) {
  std::string_view s(value);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || s.empty() || (!leading_only && end != s.data() + s.size()))
    fail("distributed environment (", launcher, "): ", name, "='", value, "' is not an integer");
  return v;
}

}  // namespace

DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv_fn) {
  DistEnv env;
  const Source* chosen = nullptr;
  for (const Source& s : kSources) {
    if (!lookup(getenv_fn, s.rank) && !lookup(getenv_fn, s.world) && !lookup(getenv_fn, s.world_alt)) continue;
    if (chosen == nullptr)
      chosen = &s;
    else
      env.ignored.push_back(s.launcher);
  }
  if (chosen == nullptr) return env;
  const Source& s = *chosen;
  const char* L = s.launcher;
  env.launcher = L;

  const char* rank_v = lookup(getenv_fn, s.rank);
  const char* world_name = s.world;
  const char* world_v = lookup(getenv_fn, s.world);
  if (!world_v && *s.world_alt) {
    world_name = s.world_alt;
    world_v = lookup(getenv_fn, s.world_alt);
  }
  if (!rank_v) fail("distributed environment (", L, "): ", world_name, "=", world_v, " is set but ", s.rank, " is not");
  if (!world_v) fail("distributed environment (", L, "): ", s.rank, "=", rank_v, " is set but ", s.world, " is not");
  env.rank = parse_int(L, s.rank, rank_v);
  env.world_size = parse_int(L, world_name, world_v);
  ENGINE_CHECK(env.world_size >= 1, "distributed environment (", L, "): ", world_name, "=", env.world_size,
               " must be at least 1");
  ENGINE_CHECK(env.rank >= 0, "distributed environment (", L, "): ", s.rank, "=", env.rank, " is negative");
  ENGINE_CHECK(env.rank < env.world_size, "distributed environment (", L, "): ", s.rank, "=", env.rank,
               " is not below ", world_name, "=", env.world_size);

  // The names actually read, for messages.
  const char* lr_name = s.local_rank;
  const char* lr_v = lookup(getenv_fn, s.local_rank);
  if (!lr_v && *s.local_rank_alt) {
    lr_name = s.local_rank_alt;
    lr_v = lookup(getenv_fn, s.local_rank_alt);
  }
  const char* ls_name = s.local_size;
  const char* ls_v = lookup(getenv_fn, s.local_size);
  bool ls_leading = false;
  if (!ls_v && *s.local_size_alt) {
    ls_name = s.local_size_alt;
    ls_v = lookup(getenv_fn, s.local_size_alt);
    ls_leading = true;
  }
  env.local_world_size = ls_v ? parse_int(L, ls_name, ls_v, ls_leading) : env.world_size;
  if (!ls_v) ls_name = world_name;  // the upper bound used in place of the missing local size
  ENGINE_CHECK(env.local_world_size >= 1, "distributed environment (", L, "): ", ls_name, "=", env.local_world_size,
               " must be at least 1");
  ENGINE_CHECK(env.local_world_size <= env.world_size, "distributed environment (", L, "): ", ls_name, "=",
               env.local_world_size, " exceeds ", world_name, "=", env.world_size);
  // No node-local rank: ranks fill the nodes in order (one node when the local size is missing too).
  env.local_rank = lr_v ? parse_int(L, lr_name, lr_v) : env.rank % env.local_world_size;
  ENGINE_CHECK(env.local_rank >= 0, "distributed environment (", L, "): ", lr_name, "=", env.local_rank,
               " is negative");
  ENGINE_CHECK(env.local_rank < env.local_world_size, "distributed environment (", L, "): ", lr_name, "=",
               env.local_rank, " is not below ", ls_name, "=", env.local_world_size);
  return env;
}

DistEnv dist_env() {
  return dist_env_from([](const char* name) -> const char* { return std::getenv(name); });
}

std::string describe(const DistEnv& env) {
  std::ostringstream s;
  s << "rank " << env.rank << " of " << env.world_size << " (local " << env.local_rank << " of " << env.local_world_size
    << ", " << env.launcher;
  if (!env.ignored.empty()) {
    s << "; ignored";
    for (const std::string& l : env.ignored) s << ' ' << l;
  }
  s << ')';
  return s.str();
}

int device_for_local_rank(int local_rank, const char* cuda_visible_devices, int device_count) {
  ENGINE_CHECK(local_rank >= 0, "device_for_local_rank: the local rank is ", local_rank, ", negative");
  if (cuda_visible_devices == nullptr) {
    ENGINE_CHECK(local_rank < device_count, "the local rank is ", local_rank, " but this machine has ", device_count,
                 " CUDA device", device_count == 1 ? "" : "s",
                 " (one device per process: start at most that many processes per node)");
    return local_rank;
  }
  // The listed entries (indices, GPU-/MIG- UUIDs): the process sees them as devices 0..n-1.
  const std::string value(cuda_visible_devices);
  int listed = 0;
  std::string_view rest(value);
  while (true) {
    const size_t comma = rest.find(',');
    std::string_view entry = rest.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    if (!entry.empty()) ++listed;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  ENGINE_CHECK(listed > 0, "CUDA_VISIBLE_DEVICES='", value, "' lists no device (CPU only) but the local rank ",
               local_rank, " needs one");
  if (listed == 1) {  // bound per process by the launcher (see the header)
    ENGINE_CHECK(device_count >= 1, "CUDA_VISIBLE_DEVICES=", value,
                 " lists 1 device but the CUDA runtime sees none (an entry it cannot use hides itself)");
    return 0;
  }
  ENGINE_CHECK(local_rank < listed, "CUDA_VISIBLE_DEVICES=", value, " lists ", listed, " device",
               listed == 1 ? "" : "s", " but the local rank is ", local_rank,
               " (one device per process: list one per process of the node)");
  ENGINE_CHECK(local_rank < device_count, "CUDA_VISIBLE_DEVICES=", value, " lists ", listed,
               " devices but the CUDA runtime sees ", device_count,
               " (an entry it cannot use hides itself and every later one); the local rank is ", local_rank);
  return local_rank;
}

}  // namespace engine::train
