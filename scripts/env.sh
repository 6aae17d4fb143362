# Sourced by the other scripts (and by developers who want plain `cargo`):
# points torch-sys at the libtorch of the torch 2.11.0 wheel in amun's
# virtual environment (LIBTORCH: headers and libraries, no Python needed, so
# the CPU-only set-up, whose `import torch` cannot work, builds too).
AMUN_CACHE="${AMUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amun}"
# libtorch for the amun binary: CPU-only or CUDA (scripts/setup.sh chooses).
AMUN_VENV="${AMUN_VENV:-$AMUN_CACHE/venv}"
# PyTorch + numpy for the tests' fixtures and the bench scripts (setup.sh --dev).
AMUN_PYENV="${AMUN_PYENV:-$AMUN_CACHE/venv-py}"
AMUN_TORCH_VERSION=2.11.0
LIBTORCH=$(ls -d "$AMUN_VENV"/lib/python3*/site-packages/torch 2>/dev/null | head -n 1 || true)
# cpu or cuda: which requirements file the venv was built from; build.rs links
# libtorch_cuda only for cuda (its CUDA libraries are absent from the cpu set-up).
AMUN_TORCH_FLAVOR=$(cat "$AMUN_VENV/amun-flavor" 2>/dev/null || true)
export AMUN_CACHE AMUN_VENV AMUN_PYENV AMUN_TORCH_VERSION LIBTORCH AMUN_TORCH_FLAVOR
unset LIBTORCH_USE_PYTORCH LIBTORCH_INCLUDE LIBTORCH_LIB
