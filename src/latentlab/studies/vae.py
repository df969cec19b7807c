"""Training the face VAE and using it: the loss, held-out PSNR, interpolation, and samples.

Samples come two ways. From the prior N(0, I), as the VAE's objective intends; with a small KL weight
the codes of real faces fill only a small part of that ball, so most prior samples decode to noise.
And from a density fitted to the training faces' codes (a Gaussian mixture), which samples where faces
are. Both are scored by the same Fréchet distance to held-out faces (`sample_quality`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from latentlab.models import training
from latentlab.runtime.device import use_amp
from latentlab.runtime.errors import LatentlabError
from latentlab.algorithms.image_quality import frechet_distance, psnr, psnr_from_mse
from latentlab.models.vae import ConvVAE, build


def split_indices(n: int, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) index arrays from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(1, int(round(n * holdout_fraction)))
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def resolve_pairs(cfg: dict, dataset: dict[str, np.ndarray], heldout: np.ndarray) -> list[tuple[int, int]]:
    """Interpolation pairs as dataset indices.

    `auto`: on lfw4151, the first `auto_pairs` (male, female) pairs of held-out faces, in index order; on
    lfw_simplified, the original study's pairs (1, 2), (100, 500), (650, 900). Explicit pairs are checked
    against the dataset size before any training.
    """
    n = len(dataset["x"])
    if cfg["pairs"] == "auto":
        if "gender" not in dataset:
            return [(1, 2), (100, 500), (650, 900)]
        male = heldout[dataset["gender"][heldout] == 0]
        female = heldout[dataset["gender"][heldout] == 1]
        k = min(cfg["auto_pairs"], len(male), len(female))
        return [(int(m), int(f)) for m, f in zip(male[:k], female[:k])]
    for i, pair in enumerate(cfg["pairs"]):
        for j, index in enumerate(pair):
            if index >= n:
                raise LatentlabError(f"params.yaml: vae.pairs[{i}][{j}] = {index} is out of range; allowed: "
                                     f"0..{n - 1} (dataset {cfg['dataset']} has {n} faces)")
    return [tuple(p) for p in cfg["pairs"]]


def make_step(cfg: dict, seed: int):
    """Loss per face = reconstruction (summed over pixels) + kl_weight · KL(q(z|x) ‖ N(0, I))."""
    generator = torch.Generator().manual_seed(seed + 1)

    def step(model, batch, train):
        x = batch[0].float().div_(255.0)
        logits, mu, logvar = model(x, generator if train else None)
        if not train:  # held-out curves decode the posterior mean: deterministic
            logits = model.decode_logits(mu)
        if cfg["recon_loss"] == "bce":
            recon = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1)
        else:
            recon = (torch.sigmoid(logits.float()) - x).pow(2).flatten(1).sum(1)
        kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(1)
        loss = (recon + cfg["kl_weight"] * kl).mean()
        with torch.no_grad():
            mse = (torch.sigmoid(logits.float()) - x).pow(2).flatten(1).mean(1)
        return loss, {"recon": recon.sum(), "kl": kl.sum(), "psnr": psnr_from_mse(mse).sum()}

    return step


def epochs_for(cfg: dict, n_train: int) -> int:
    """`epochs`, raised until training takes `min_steps` optimizer steps: the course's 1,000 faces give a
    quarter of the steps per epoch of the 4,151, and 16 passes over them left the VAE underfitted."""
    return max(cfg["epochs"], math.ceil(cfg["min_steps"] / math.ceil(n_train / cfg["batch_size"])))


def fit(cfg: dict, train_x: np.ndarray, heldout_x: np.ndarray, device: torch.device, on_epoch=None):
    torch.manual_seed(cfg["seed"])
    model = build(cfg["arch"], cfg["latent_dim"], cfg["width"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    epochs = epochs_for(cfg, len(train_x))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history = training.fit(model, make_step(cfg, cfg["seed"]), (torch.from_numpy(train_x).to(device),),
                           (torch.from_numpy(heldout_x).to(device),), epochs=epochs, optimizer=opt,
                           scheduler=sched, batch_size=cfg["batch_size"], device=device, seed=cfg["seed"],
                           amp=use_amp(cfg["amp"], device), name="train_vae", on_epoch=on_epoch)
    return model, history


def _float(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(images).float().div_(255.0).to(device)


@torch.no_grad()
def reconstruct(model: ConvVAE, images: np.ndarray, device) -> np.ndarray:
    """Decode the posterior mean: the deterministic reconstruction PSNR is measured on."""
    model.eval()
    x = _float(images, device)
    return torch.cat([model.decode(model.encode(x[i:i + 500])[0]) for i in range(0, len(x), 500)]).cpu().numpy()


@torch.no_grad()
def interpolate(model: ConvVAE, a: np.ndarray, b: np.ndarray, alphas: list[float], device) -> np.ndarray:
    """Decode (1 − α)·z_a + α·z_b for each α, z the posterior means of faces a and b: (len(alphas), 3, 32, 32)."""
    model.eval()
    z = model.encode(_float(np.stack([a, b]), device))[0]
    weights = torch.tensor(alphas, dtype=z.dtype, device=z.device)[:, None]
    return model.decode((1 - weights) * z[0] + weights * z[1]).cpu().numpy()


@torch.no_grad()
def sample_prior(model: ConvVAE, n: int, seed: int, device) -> np.ndarray:
    model.eval()
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return model.decode(z).cpu().numpy()


@torch.no_grad()
def encode_means(model: ConvVAE, images: np.ndarray, device) -> np.ndarray:
    """Posterior means of the faces' codes, in batches: what the fitted density is fitted to."""
    model.eval()
    x = _float(images, device)
    return torch.cat([model.encode(x[i:i + 500])[0] for i in range(0, len(x), 500)]).float().cpu().numpy()


def fit_code_density(codes: np.ndarray, components: int, seed: int):
    """A full-covariance Gaussian mixture over the codes; its `random_state` makes `sample` repeatable."""
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(components, covariance_type="full", random_state=seed).fit(codes.astype(np.float64))


@torch.no_grad()
def sample_fitted(model: ConvVAE, density, n: int, device) -> np.ndarray:
    """Decode `n` codes drawn from the fitted density (the same ones for the same density and seed)."""
    model.eval()
    codes, _ = density.sample(n)
    order = np.random.default_rng(density.random_state).permutation(n)  # sample() groups by component
    return model.decode(torch.from_numpy(codes[order]).float().to(device)).cpu().numpy()


def _pixels(images: np.ndarray) -> np.ndarray:
    """Faces as flat float rows in [0, 1], whether uint8 data or decoded floats."""
    flat = images.reshape(len(images), -1)
    return flat.astype(np.float32) / 255.0 if flat.dtype == np.uint8 else flat.astype(np.float32)


def sample_quality(model: ConvVAE, train_x: np.ndarray, heldout_x: np.ndarray, cfg: dict, device):
    """Fréchet distances to the held-out faces of prior samples, fitted-density samples and held-out
    reconstructions (the floor a sampler could reach), in the space of the training faces' first
    `feature_dims` principal components; as many images in each set as held-out faces.

    Returns the metrics and both samplers' images."""
    from latentlab.algorithms.pca import PCA

    s = cfg["samples"]
    features = PCA(s["feature_dims"], random_state=cfg["seed"]).fit(_pixels(train_x))
    reference = features.transform(_pixels(heldout_x))
    n = len(heldout_x)
    density = fit_code_density(encode_means(model, train_x, device), s["gmm_components"], cfg["seed"])
    prior = sample_prior(model, n, cfg["seed"], device)
    fitted = sample_fitted(model, density, n, device)

    def distance(images):
        return round(frechet_distance(features.transform(_pixels(images)), reference), 3)

    metrics = {"fd_prior": distance(prior), "fd_fitted": distance(fitted),
               "fd_reconstruction": distance(reconstruct(model, heldout_x, device))}
    return metrics, prior, fitted


def evaluate(model: ConvVAE, heldout_x: np.ndarray, device, cfg: dict) -> dict[str, float]:
    """Held-out PSNR of the posterior-mean reconstruction, mean KL, and the β = 1 ELBO per face."""
    recon = reconstruct(model, heldout_x, device)
    truth = heldout_x.astype(np.float32) / 255.0
    model.eval()
    with torch.no_grad():
        mu, logvar = model.encode(_float(heldout_x, device))
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)).mean().item()
    sq = ((recon - truth) ** 2).reshape(len(truth), -1)
    recon_term = float(sq.sum(1).mean()) if cfg["recon_loss"] == "mse" else float(
        F.binary_cross_entropy(torch.from_numpy(recon).clamp(1e-6, 1 - 1e-6), torch.from_numpy(truth),
                               reduction="none").flatten(1).sum(1).mean())
    return {"heldout_psnr": round(float(psnr(torch.from_numpy(truth), torch.from_numpy(recon)).mean()), 3),
            "heldout_kl": round(kl, 3), "heldout_elbo": round(-(recon_term + kl), 3)}


def tradeoff_figure(path, frame, default_beta: float) -> None:
    """Held-out PSNR against the Fréchet distance of samples, one point per KL weight β."""
    from latentlab.runtime.plotting import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4.3))
    for r in frame.itertuples():  # one β: a faint vertical line through its three points, labelled once
        ax.plot([r.heldout_psnr] * 3, [r.fd_reconstruction, r.fd_fitted, r.fd_prior], color="0.85", lw=0.8, zorder=0)
        default = r.kl_weight == default_beta
        ax.annotate(f"β={r.kl_weight:g}" + (" (default)" if default else ""), (r.heldout_psnr, r.fd_prior),
                    fontsize=7, fontweight="bold" if default else "normal", textcoords="offset points",
                    xytext=(-4, 6), ha="right" if r.heldout_psnr > frame["heldout_psnr"].mean() else "left")
    for column, label, marker in (("fd_prior", "prior N(0, I)", "o"), ("fd_fitted", "fitted Gaussian mixture", "s")):
        ax.plot(frame["heldout_psnr"], frame[column], marker=marker, label=f"samples from the {label}")
    ax.plot(frame["heldout_psnr"], frame["fd_reconstruction"], ls=":", marker=".", color="grey",
            label="held-out reconstructions (the floor)")
    ax.set_xlabel("held-out reconstruction PSNR (dB) →  better"), ax.set_ylabel("Fréchet distance to held-out faces")
    ax.set_yscale("log"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    ax.set_title("face VAE: reconstruction vs sampling across the KL weight β")
    save_figure(path, fig)
