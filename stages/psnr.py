"""Stage psnr: held-out PSNR of every dog autoencoder at its noise level, PSNR-vs-σ table and plot."""

import pandas as pd

from latentlab import ae_dogs, data, device, io, plotting, stage, tracking


def main(params: dict) -> str:
    cfg = params["ae_dogs"]
    dev = device.resolve(params["device"])
    x_test = data.load_prepared("dogs")["x_test"]
    rows = []
    with tracking.start_run("psnr", {"ae_dogs": {"noise_std": cfg["noise_std"], "seed": cfg["seed"]}}) as run:
        for sigma in sorted(cfg["noise_std"]):
            model = ae_dogs.build(cfg, dev)
            model.load_state_dict(io.load_torch(f"models/ae_dogs/noisy_{sigma:g}.pt"))
            rows.append({"noise_std": sigma, **ae_dogs.psnr_pair(sigma, model, x_test, dev, cfg["seed"])})
            run.log_metrics({f"psnr_original_vs_noisy_sigma_{sigma:g}": rows[-1]["psnr_original_vs_noisy"]})
    frame = pd.DataFrame(rows)
    io.save_csv("plots/psnr/psnr_vs_noise.csv", frame)
    io.save_json("metrics/psnr.json", {f"sigma_{r['noise_std']:g}": {k: v for k, v in r.items() if k != "noise_std"}
                                       for r in rows})
    fig, ax = plotting.plt.subplots(figsize=(5.5, 4))
    for column, label in (("psnr_original_vs_noisy", "original vs noisy reconstruction"),
                          ("psnr_clean_vs_noisy", "clean vs noisy reconstruction"),
                          ("psnr_original_vs_clean", "original vs clean reconstruction")):
        ax.plot(frame["noise_std"], frame[column], marker="o", label=label)
    ax.set_xlabel("channel noise σ (code power-normalised)"), ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3), ax.legend(fontsize=8), ax.set_title("dog autoencoders: PSNR vs noise")
    io.save_figure("plots/psnr/psnr_vs_noise.png", fig)
    return "; ".join(f"σ={r['noise_std']:g}: {r['psnr_original_vs_noisy']:.2f} dB" for r in rows)


if __name__ == "__main__":
    stage.run("psnr", main)
