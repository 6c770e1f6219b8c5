"""Where the shared real data lives for tests: ../shared/data beside the checkout (CI has it)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
G1_NPZ = SHARED_DATA / "actions" / "g1_inspire_26d_30hz.npz"
G1_BAG_MCAP = SHARED_DATA / "bags" / "g1_inspire_ep1_mcap"
G1_BAG_DB3 = SHARED_DATA / "bags" / "g1_inspire_ep1_db3"
G1_LEROBOT = SHARED_DATA / "g1_inspire"
