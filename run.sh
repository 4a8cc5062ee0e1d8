#!/usr/bin/env bash
# Sets up .venv when needed, then runs one job:
#   bash run.sh search [options]   search on the bundled default model and print the schedule
#   bash run.sh test [pytest args] run the test suite
# The set-up (first run: minutes) installs torch, oss_fast in editable mode with the extras test,
# triton and plots (compiling csrc/), and k-diffusion for the tests. Later runs skip it while
# .venv/oss-fast-setup.json matches what it depended on (run.sh, pyproject.toml, CMakeLists.txt,
# csrc/, oss_fast/_version.py, the Python version, nvcc on PATH, CMAKE_ARGS), oss_fast imports
# from this checkout and the packages it requires are in place.
# Which torch, read when .venv is created (changing it recreates .venv):
#   OSS_FAST_TORCH unset  reuse a torch that python3 can import (e.g. your CUDA build), else
#                         pip install torch==2.13.0 from the configured index (PyPI: the CUDA build on Linux)
#   OSS_FAST_TORCH=cpu    the CPU build, from https://download.pytorch.org/whl/cpu
#   OSS_FAST_TORCH=cuda   torch==2.13.0 from the configured index, even where python3 has a torch
#   OSS_FAST_TORCH=<args> handed to pip install as is, e.g. "torch==2.13.0 --index-url URL"
# PYTHON (default python3) is the Python that creates .venv.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
torch_choice=${OSS_FAST_TORCH:-}
torch_pin=torch==2.13.0
kdiffusion_pin=k-diffusion==0.1.1.post1
stamp=.venv/oss-fast-setup.json          # what the last finished set-up depended on
torch_choice_file=.venv/oss-fast-torch   # the OSS_FAST_TORCH that .venv was made with

job=${1:-}
shift || true
case "$job" in
  search|test) ;;
  *) echo "usage: bash run.sh search|test [args]" >&2; exit 2 ;;
esac

say() { echo "oss_fast set-up: $*" >&2; }
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
# run with -W ignore: right after torch is installed numpy may not be yet, and torch warns about it
describe_torch='import torch; print("torch", torch.__version__, "(CUDA %s build)" % torch.version.cuda if torch.version.cuda else "(CPU build)")'

create_venv() {  # create_venv <why>
  say "$1: creating .venv with $python ($("$python" -c 'import platform; print("Python", platform.python_version())')) ..."
  if [ -z "$torch_choice" ] && "$python" -c "import torch" 2>/dev/null; then
    # the torch python3 already has (often a CUDA build) is reused, not downloaded again
    "$python" -m venv --clear --system-site-packages .venv
    # not where python3 is itself a virtual environment: .venv then sees its base Python's packages
    if .venv/bin/python -c "import torch" 2>/dev/null; then
      say "reusing the torch of $python: $(.venv/bin/python -W ignore -c "$describe_torch") (through --system-site-packages)"
    fi
  else
    "$python" -m venv --clear .venv
  fi
  printf '%s' "$torch_choice" >"$torch_choice_file"
  say "upgrading pip in .venv ..."
  pip install --upgrade pip
}

install_torch() {
  case "$torch_choice" in
    "")
      say "installing $torch_pin from the configured package index (from PyPI on Linux that is the CUDA build, several GB; OSS_FAST_TORCH=cpu picks the CPU build, about 200 MB) ..."
      pip install "$torch_pin" ;;
    cpu)
      say "installing $torch_pin, the CPU build, from https://download.pytorch.org/whl/cpu (about 200 MB) ..."
      pip install "$torch_pin" --index-url https://download.pytorch.org/whl/cpu ;;
    cuda)
      say "installing $torch_pin from the configured package index (from PyPI on Linux: the CUDA build, several GB) ..."
      pip install "$torch_pin" ;;
    *)
      say "installing torch with: pip install $torch_choice ..."
      # word splitting on purpose: the value is pip arguments
      # shellcheck disable=SC2086
      pip install $torch_choice ;;
  esac
  local installed
  installed=$(.venv/bin/python -W ignore -c "$describe_torch")
  say "installed $installed"
  if [ "$torch_choice" = cuda ] && [[ "$installed" == *"CPU build"* ]]; then
    say "warning: OSS_FAST_TORCH=cuda, but the configured index gave a CPU build; name a CUDA index: OSS_FAST_TORCH=\"$torch_pin --index-url https://download.pytorch.org/whl/cu<version>\""
  fi
}

install_kdiffusion() {
  say "installing $kdiffusion_pin, the tests' oracle (without its dependencies: wandb, CLIP, ... are not needed) ..."
  pip install --no-deps --force-reinstall "$kdiffusion_pin"  # forced: its files may be gone
}

# Prints "current", "k-diffusion" (only the tests' oracle is missing) or why pip must run; that
# is "NAME ...: installed, but files are gone" for packages whose files were deleted, which pip
# would take for installed (set_up uninstalls them first). Writes what the set-up now depends on
# to $stamp.pending, which becomes $stamp once the set-up finishes (taken before pip runs, so an
# edit made during the build is not recorded as built). About 0.3 s: no torch import, only file
# hashes and package metadata.
check_setup() {
  .venv/bin/python - "$job" "$stamp" <<'PY'
import hashlib, importlib, importlib.metadata as metadata, json, os, shutil, sys

if sys.path[0] == "":
    del sys.path[0]  # the checkout itself: oss_fast must import as installed
job, stamp = sys.argv[1:3]
EXTRAS = ("test", "triton", "plots")
KDIFFUSION = ("k-diffusion", "0.1.1.post1")


def setup_inputs():
    """Everything the installed package depends on besides its Python files (an editable install follows those)."""
    paths = ["run.sh", "pyproject.toml", "CMakeLists.txt", "oss_fast/_version.py"]  # _version.py is compiled into _C
    for root, dirs, files in os.walk("csrc"):
        dirs.sort()
        paths += sorted(os.path.join(root, name) for name in files)
    inputs = {}
    for path in paths:
        with open(path, "rb") as f:
            inputs[path] = hashlib.sha256(f.read()).hexdigest()
    inputs["Python"] = sys.version
    inputs["nvcc"] = shutil.which("nvcc") or "none"  # CMake compiles the CUDA twin where it finds nvcc
    inputs["CMAKE_ARGS"] = os.environ.get("CMAKE_ARGS", "")
    return inputs


def files_missing(name):
    """True when a distribution's metadata is there but a top-level folder or module it installed is not."""
    dist = metadata.distribution(name)
    tops = {f.parts[0] for f in dist.files or () if f.parts[0] != ".." and "__pycache__" not in f.parts}
    return any(not os.path.exists(dist.locate_file(top)) for top in tops)


def required_distributions():
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    for line in metadata.requires("oss_fast") or ():
        requirement = Requirement(line)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in EXTRAS):
            yield requirement.name


def why_pip_must_run():
    inputs = setup_inputs()
    with open(stamp + ".pending", "w") as f:
        json.dump(inputs, f, indent=1)
    try:
        with open(stamp) as f:
            stamped = json.load(f)
    except (OSError, ValueError):
        return "no finished set-up recorded in .venv"
    changed = [key for key in sorted(inputs.keys() | stamped.keys()) if inputs.get(key) != stamped.get(key)]
    if changed:
        return f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} changed since the last set-up"
    try:
        oss_fast = importlib.import_module("oss_fast")
        importlib.import_module("oss_fast._C")
    except Exception as e:
        return f"oss_fast does not import ({type(e).__name__}: {e})".splitlines()[0]
    here = os.path.realpath("oss_fast")
    where = os.path.dirname(os.path.realpath(oss_fast.__file__))
    if where != here:  # e.g. a copied or moved checkout: its .venv still points at the old one
        return f"oss_fast imports from {where}, not from this checkout"
    try:
        broken = [name for name in dict.fromkeys(required_distributions()) if files_missing(name)]
    except metadata.PackageNotFoundError as e:
        return f"{e.name} is not installed"
    if broken:
        return f"{' '.join(broken)}: installed, but files are gone"
    return None


def kdiffusion_missing():
    name, version = KDIFFUSION
    try:
        return metadata.version(name) != version or files_missing(name)
    except metadata.PackageNotFoundError:
        return True


reason = why_pip_must_run()
print(reason or ("k-diffusion" if job == "test" and kdiffusion_missing() else "current"))
PY
}

set_up() {  # set_up <why, as check_setup printed it>
  if [[ "$1" == *": installed, but files are gone" ]]; then
    # shellcheck disable=SC2086  # a list of package names
    pip uninstall -y ${1%%: *}
  fi
  .venv/bin/python -c "import torch" 2>/dev/null || install_torch
  say "installing oss_fast in editable mode with the extras test, triton and plots, and compiling its C++ extension (about a minute; longer while the extras download) ..."
  pip install -e ".[test,triton,plots]"
  if [ "$job" = test ]; then install_kdiffusion; fi
  mv "$stamp.pending" "$stamp"
  say "done in $SECONDS s; later runs skip this while run.sh, pyproject.toml, CMakeLists.txt and csrc/ are unchanged"
}

venv_created=yes
venv_torch_choice=""
if [ -f "$torch_choice_file" ]; then venv_torch_choice=$(<"$torch_choice_file"); fi
if [ ! -d .venv ]; then
  create_venv "first run"
elif ! .venv/bin/python -c "" 2>/dev/null; then
  create_venv ".venv's python does not run"
elif [ "$venv_torch_choice" != "$torch_choice" ]; then
  create_venv "OSS_FAST_TORCH is '${torch_choice:-unset}', .venv was made with '${venv_torch_choice:-unset}'"
else
  venv_created=no
fi
setup_status=$(check_setup)
case "$setup_status" in
  current) ;;
  k-diffusion) install_kdiffusion ;;
  *) if [ "$venv_created" = no ]; then say "$setup_status: installing ..."; fi
     set_up "$setup_status" ;;
esac

case "$job" in
  search) exec .venv/bin/python -m oss_fast search "$@" ;;  # not .venv/bin/oss-fast: its #! line names the .venv it was installed in
  test) exec .venv/bin/python -m pytest "$@" ;;
esac
