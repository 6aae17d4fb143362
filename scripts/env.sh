# Sourced by the other scripts (and by developers who want plain `cargo`):
# points torch-sys at the torch 2.11.0 wheel in amun's virtual environment.
AMUN_CACHE="${AMUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/amun}"
AMUN_VENV="${AMUN_VENV:-$AMUN_CACHE/venv}"
AMUN_TORCH_VERSION=2.11.0
export AMUN_CACHE AMUN_VENV AMUN_TORCH_VERSION
export VIRTUAL_ENV="$AMUN_VENV"
export PATH="$AMUN_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
