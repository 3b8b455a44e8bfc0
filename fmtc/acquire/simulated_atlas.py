"""SIM424: the simulator's own 424-region atlas, made from nilearn's grey-matter template.

No download: the MNI152 grey-matter probability map ships inside nilearn. Grey
matter (probability > 0.5, 2 mm grid) is cut into 424 spatially compact parcels
by k-means on voxel coordinates, and the parcels into 7 spatially coherent
networks by k-means on their centroids. Parcels are numbered network by network
(so a network is a contiguous block of the region order, as in BrainLM's A424
tables), then front to back. The result is cached; it is deterministic for given
nilearn and scikit-learn versions, which the atlas records.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from fmtc.acquire.atlas import Atlas
from fmtc.storage import atomic_path, write_json

NAME = "SIM424"
N_REGIONS = 424
N_NETWORKS = 7
GREY_MATTER_THRESHOLD = 0.5
_FILES = ("SIM424+2mm.nii.gz", "SIM424_regions.tsv", "SIM424_provenance.json")


def build_simulated_atlas(cache_dir: Path, seed: int = 0) -> Atlas:
    """Return the SIM424 atlas, building it into ``cache_dir`` on first use.

    Parameters
    ----------
    cache_dir : Path
        Folder for the label image and regions table (e.g. ``data/atlases``).
    seed : int
        Seed of both k-means fits.

    Returns
    -------
    Atlas
        424 regions with MNI centroids and networks ``SimNet1`` … ``SimNet7``.
    """
    folder = Path(cache_dir) / f"{NAME}-seed{seed}"
    image_path, regions_path, provenance_path = (folder / name for name in _FILES)
    expected = _provenance(seed)
    if not (provenance_path.is_file() and json.loads(provenance_path.read_text()) == expected):
        _build(folder, seed)
        write_json(provenance_path, expected)  # written last: marks the build complete
    regions = pd.read_csv(regions_path, sep="\t", dtype={"name": str, "network": str})
    return Atlas(name=NAME, labels_img=image_path, regions=regions,
                 licence="CC0 (made by fmtc from nilearn's MNI152 grey-matter template)")


def _provenance(seed: int) -> dict[str, object]:
    import nilearn
    import sklearn

    return {"atlas": NAME, "seed": seed, "n_regions": N_REGIONS, "n_networks": N_NETWORKS,
            "grey_matter_threshold": GREY_MATTER_THRESHOLD,
            "template": "nilearn.datasets.load_mni152_gm_template(resolution=2)",
            "nilearn": nilearn.__version__, "scikit-learn": sklearn.__version__}


def _build(folder: Path, seed: int) -> None:
    import nibabel as nib
    from nilearn.datasets import load_mni152_gm_template
    from sklearn.cluster import KMeans

    template = load_mni152_gm_template(resolution=2)
    grey = np.asarray(template.get_fdata()) > GREY_MATTER_THRESHOLD
    ijk = np.argwhere(grey)
    xyz = ijk @ template.affine[:3, :3].T + template.affine[:3, 3]

    # Fit on every other voxel along each axis (8x fewer points), assign all voxels.
    sample = np.all(ijk % 2 == 0, axis=1)
    parcels = KMeans(N_REGIONS, n_init=1, random_state=seed).fit(xyz[sample])
    voxel_parcel = parcels.predict(xyz)
    centroids = np.stack([xyz[voxel_parcel == p].mean(axis=0) for p in range(N_REGIONS)])
    networks = KMeans(N_NETWORKS, n_init=10, random_state=seed).fit_predict(centroids)

    # Networks numbered front to back by their mean y; parcels network by network.
    network_rank = np.argsort(np.argsort([-centroids[networks == k, 1].mean()
                                          for k in range(N_NETWORKS)]))
    network_of = network_rank[networks]
    order = np.lexsort((centroids[:, 0], -centroids[:, 1], network_of))
    new_index = np.empty(N_REGIONS, dtype=np.int64)
    new_index[order] = np.arange(1, N_REGIONS + 1)

    labels = np.zeros(grey.shape, dtype=np.int16)
    labels[tuple(ijk.T)] = new_index[voxel_parcel]
    image = nib.Nifti1Image(labels, template.affine)
    image.header.set_data_dtype(np.int16)
    image.header["descrip"] = b"fmtc SIM424 simulated atlas"

    regions = pd.DataFrame({
        "index": np.arange(1, N_REGIONS + 1),
        "name": [f"SIM_{i:03d}" for i in range(1, N_REGIONS + 1)],
        "x": np.round(centroids[order, 0], 1),
        "y": np.round(centroids[order, 1], 1),
        "z": np.round(centroids[order, 2], 1),
        "network": [f"SimNet{k + 1}" for k in network_of[order]],
    })
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / _FILES[0]) as tmp:
        # mtime=0 keeps the file byte-identical from one build to the next.
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as handle:
                handle.write(image.to_bytes())
    with atomic_path(folder / _FILES[1]) as tmp:
        regions.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
