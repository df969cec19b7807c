"""Stage fetch: verified raw files of every dataset into data/raw/."""

from pathlib import Path

from latentlab.data import fetch
from latentlab.runtime import stage


def main(params: dict) -> str:
    sources = fetch.fetch_all(Path("data/raw"), timeout=params["fetch"]["timeout_s"])
    origins = sorted({s.rsplit("/", 2)[0] if not s.startswith("http") else "network" for s in sources.values()})
    return f"{len(sources)} raw files verified into data/raw (from {', '.join(origins)})"


if __name__ == "__main__":
    stage.run("fetch", main)
