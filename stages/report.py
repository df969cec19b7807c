"""Stage report: one self-contained HTML page with every figure and metric of the run, and what is missing."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from pathlib import Path  # noqa: E402

from latentlab.runtime import io, stage  # noqa: E402
from latentlab.reporting import report  # noqa: E402

OUT = Path("report/index.html")


def main(params: dict) -> str:
    page, counts = report.build(params)
    with io.atomic_path(OUT) as tmp:
        tmp.write_text(page)
    return f"{OUT} with {len(counts)} sections, {sum(counts.values())} figures ({len(page.encode()) / 1e6:.1f} MB)"


if __name__ == "__main__":
    stage.run("report", main)
