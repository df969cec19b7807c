"""Stage fetch: verified raw files of every dataset into data/raw/."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from pathlib import Path  # noqa: E402

from latentlab.data import fetch  # noqa: E402
from latentlab.runtime import stage  # noqa: E402


def main(params: dict) -> str:
    sources = fetch.fetch_all(Path("data/raw"), timeout=params["fetch"]["timeout_s"])
    origins = sorted({s.rsplit("/", 2)[0] if not s.startswith("http") else "network" for s in sources.values()})
    return f"{len(sources)} raw files verified into data/raw (from {', '.join(origins)})"


if __name__ == "__main__":
    stage.run("fetch", main)
