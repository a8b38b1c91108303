# shellcheck shell=sh
# The node-side probe of the jexida inventory: ONE ssh round trip per node reads its facts.
# POSIX sh for Linux and macOS, read whole from stdin by `/bin/sh -s`. Everything runs inside a
# function that sh reads before running it, with stdin from /dev/null, so nothing in it can eat
# the rest of the script. It prints raw numbers; all arithmetic is done by the parser
# (plugin_utils/facts.py). @JOB_DIR@, @BEGIN@ and @END@ are filled in by probe_script().
# The comment lines are dropped before sending.
jexida_probe() {
  LC_ALL=C; export LC_ALL
  job_dir=@JOB_DIR@
  echo '@BEGIN@'
# Split into fields on purpose (column-0 comments like this one are not sent).
# shellcheck disable=SC2046
  set -- $(uname -sm 2>/dev/null)
  os=$1
  echo "os=$os"
  echo "arch=$2"
  case $os in
    Linux)
      read -r loadavg < /proc/loadavg
      echo "loadavg=$loadavg"
      echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all 2>/dev/null || nproc)"
      mt='' ma='' mf=0 mb=0 mc=0
      while read -r key value _; do
        case $key in
          MemTotal:) mt=$value ;;
          MemAvailable:) ma=$value ;;
          MemFree:) mf=$value ;;
          Buffers:) mb=$value ;;
          Cached:) mc=$value ;;
        esac
      done < /proc/meminfo
      # Kernels before 3.14 have no MemAvailable.
      [ -n "$ma" ] || ma=$((mf + mb + mc))
      echo "mem_total_kb=$mt"
      echo "mem_available_kb=$ma"
      read -r s1 < /proc/stat
      sleep 0.1 2>/dev/null || sleep 1
      read -r s2 < /proc/stat
      echo "cpu_stat_1=$s1"
      echo "cpu_stat_2=$s2"
      if [ -r /etc/os-release ]; then
        while IFS='=' read -r key value; do
          case $key in
            ID) echo "distribution=$value" ;;
            VERSION_ID) echo "distribution_version=$value" ;;
          esac
        done < /etc/os-release
      fi
      ;;
    Darwin)
      echo "loadavg=$(sysctl -n vm.loadavg)"
      echo "cpus=$(sysctl -n hw.logicalcpu 2>/dev/null || sysctl -n hw.ncpu)"
      echo "mem_total_bytes=$(sysctl -n hw.memsize)"
      vm_stat | sed 's/^/vm_stat=/'
      echo "distribution=$(sw_vers -productName)"
      echo "distribution_version=$(sw_vers -productVersion)"
      ;;
    *)
      echo "loadavg=$(sysctl -n vm.loadavg)"
      echo "cpus=$(sysctl -n hw.ncpu)"
      echo "mem_total_bytes=$(sysctl -n hw.physmem)"
      ;;
  esac
  disk_path=$job_dir
  [ -d "$disk_path" ] || disk_path=$HOME
  echo "disk_path=$disk_path"
  set -f
# Split into fields on purpose, with globbing off.
# shellcheck disable=SC2046
  set -- $(df -Pk "$disk_path" | tail -n 1)
  set +f
  echo "disk_free_kb=$4"
  if command -v python3 >/dev/null 2>&1; then echo "python=$(python3 --version 2>&1)"; fi
  jobs=0
  for d in "$job_dir"/*/; do
    [ -f "${d}pid" ] || continue
    [ -e "${d}rc" ] && continue
    pid=''
    read -r pid < "${d}pid"
    case $pid in ''|*[!0-9]*) continue ;; esac
    # kill -0 fails with EPERM on another user's live process; /proc still shows it.
    if kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]; then jobs=$((jobs + 1)); fi
  done
  echo "running_jobs=$jobs"
  if command -v nvidia-smi >/dev/null 2>&1; then
    # A wedged driver can hang nvidia-smi: bound it where timeout(1) exists.
    if command -v timeout >/dev/null 2>&1; then
      echo "gpu_count=$(timeout 5 nvidia-smi -L | grep -c '^GPU ')"
    else
      echo "gpu_count=$(nvidia-smi -L | grep -c '^GPU ')"
    fi
  fi
  command -v docker >/dev/null 2>&1 && echo "docker=1"
  command -v podman >/dev/null 2>&1 && echo "podman=1"
  echo '@END@'
}
jexida_probe </dev/null 2>/dev/null
exit 0
