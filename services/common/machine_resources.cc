#include "services/common/machine_resources.h"

#include <sched.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "services/common/log.h"

namespace linearize::server {

std::vector<GpuStatus> QueryGpus(int visible_devices) {
  const int count = visible_devices;
  std::vector<GpuStatus> gpus;
  if (count <= 0) return gpus;
  std::vector<GpuStatus> all;  // every GPU of the machine, by physical index
  FILE* pipe = ::popen(
      "nvidia-smi --query-gpu=index,name,memory.total,memory.used,compute_cap,uuid "
      "--format=csv,noheader,nounits 2>/dev/null",
      "r");
  if (pipe != nullptr) {
    char line[1024];
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      std::vector<std::string> f = absl::StrSplit(line, ',');
      if (f.size() < 6) continue;
      for (std::string& s : f) s = std::string(absl::StripAsciiWhitespace(s));
      GpuStatus g;
      int64_t total_mib = 0, used_mib = 0;
      if (!absl::SimpleAtoi(f[0], &g.index) || !absl::SimpleAtoi(f[2], &total_mib)) continue;
      (void)absl::SimpleAtoi(f[3], &used_mib);
      g.name = f[1];
      g.memory_total_bytes = total_mib << 20;
      g.memory_used_bytes = used_mib << 20;
      g.compute_capability = f[4];
      g.uuid = f[5];
      all.push_back(g);
    }
    ::pclose(pipe);
  }
  // The devices this process sees, in CUDA's order: CUDA_VISIBLE_DEVICES
  // (indices or UUIDs) when set, else the first `count`.
  std::vector<std::string> visible;
  if (const char* env = std::getenv("CUDA_VISIBLE_DEVICES"); env != nullptr && *env != '\0') {
    for (absl::string_view v : absl::StrSplit(env, ',')) {
      visible.push_back(std::string(absl::StripAsciiWhitespace(v)));
    }
  } else {
    for (int i = 0; i < count; ++i) visible.push_back(std::to_string(i));
  }
  for (const std::string& v : visible) {
    if (static_cast<int>(gpus.size()) >= count) break;
    for (const GpuStatus& g : all) {
      if (v == std::to_string(g.index) || (v.size() > 3 && absl::StartsWith(g.uuid, v))) {
        gpus.push_back(g);
        gpus.back().index = static_cast<int>(gpus.size()) - 1;  // CUDA's index in this process
        break;
      }
    }
  }
  if (static_cast<int>(gpus.size()) != count) {
    LogError("gpus.undescribed",
             {{"cuda_devices", count}, {"described", static_cast<int>(gpus.size())},
              {"note", "nvidia-smi could not describe every device; offering none"}});
    gpus.clear();
  }
  return gpus;
}

v1::WorkerResources DetectResources(const std::vector<GpuStatus>& gpus, int cpu_threads,
                                    const std::string& scratch_dir) {
  v1::WorkerResources r;
  for (const GpuStatus& g : gpus) {
    v1::GpuDevice* d = r.add_gpus();
    d->set_index(g.index);
    d->set_name(g.name);
    d->set_memory_bytes(g.memory_total_bytes);
    d->set_compute_capability(g.compute_capability);
    d->set_uuid(g.uuid);
  }
  cpu_set_t set;
  int cores = 0;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cpu_threads > 0 && cpu_threads < cores) cores = cpu_threads;
  r.set_cpu_cores(std::max(1, cores));
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  r.set_memory_bytes(pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : int64_t{1} << 30);
  struct statvfs vfs;
  if (!scratch_dir.empty() && ::statvfs(scratch_dir.c_str(), &vfs) == 0) {
    r.set_scratch_bytes(static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize));
  }
  return r;
}

}  // namespace linearize::server
