#include "common/metrics/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace linearize::metrics {
namespace {

MetricFamily One(const char* name, const char* help, MetricType type, double value) {
  MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  ClientMetric m;
  m.counter.value = value;
  m.gauge.value = value;
  family.metric.push_back(m);
  return family;
}

// Boot time in Unix seconds, from /proc/stat's btime line.
bool BootTime(double* out) {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      long long btime = 0;
      if (!(in >> btime)) return false;
      *out = static_cast<double>(btime);
      return true;
    }
    in.ignore(1 << 20, '\n');
  }
  return false;
}

}  // namespace

std::vector<MetricFamily> ProcessCollector::Collect() const {
  std::vector<MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));

  // /proc/self/stat: fields after the ")" that ends the command name.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  if (size_t close = stat.rfind(')'); close != std::string::npos && ticks > 0) {
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string s; fields >> s;) f.push_back(s);
    // f[0] is field 3 (state): utime = field 14, stime 15, starttime 22,
    // vsize 23, rss 24 (pages).
    if (f.size() > 21) {
      const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      out.push_back(One("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.", MetricType::kCounter,
                        cpu));
      double boot = 0;
      if (BootTime(&boot)) {
        out.push_back(One("process_start_time_seconds",
                          "Start time of the process since unix epoch in seconds.",
                          MetricType::kGauge, boot + std::stod(f[19]) / ticks));
      }
      out.push_back(One("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                        MetricType::kGauge, std::stod(f[20])));
      out.push_back(One("process_resident_memory_bytes", "Resident memory size in bytes.",
                        MetricType::kGauge, std::stod(f[21]) * page));
    }
  }

  if (DIR* dir = opendir("/proc/self/fd")) {
    int count = 0;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    // The DIR handle itself was one of them.
    out.push_back(
        One("process_open_fds", "Number of open file descriptors.", MetricType::kGauge, count - 1));
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out.push_back(One("process_max_fds", "Maximum number of open file descriptors.",
                      MetricType::kGauge, static_cast<double>(limit.rlim_cur)));
  }
  return out;
}

}  // namespace linearize::metrics
