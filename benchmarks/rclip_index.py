"""Time rclip indexing a folder: runs in rclip's own environment (scripts/build_peer_rclip.sh), imports
only rclip and the standard library, and prints one JSON line: images indexed, ensure_index's seconds
and CPU seconds (all its threads), and the whole process's seconds.

    RCLIP_DATADIR=<dir with the model files> HF_HUB_OFFLINE=1 <peer>/bin/python rclip_index.py FOLDER

This is what `rclip QUERY` does in FOLDER up to its search (rclip.main.init_rclip: the database, the model,
RClip.ensure_index), with the visual session loaded and run once on a batch before the clock starts, as
the clipsearch worker's session is warm when its routes are timed.
"""

import argparse
import json
import sqlite3
import time

PROCESS_START = time.perf_counter()

import numpy as np  # noqa: E402
from rclip import db, model  # noqa: E402
from rclip.main import RClip  # noqa: E402
from rclip.utils import helpers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--batch", type=int, default=8, help="rclip's --indexing-batch-size (default 8)")
    args = parser.parse_args()

    db_path = helpers.get_app_datadir() / "db.sqlite3"
    database = db.DB(db_path)
    clip = model.Model()
    clip.ensure_downloaded()
    warm = [np.zeros((3, 256, 256), dtype=np.float32)] * args.batch
    clip.compute_preprocessed_image_features(warm, for_indexing=True)
    rclip = RClip(model_instance=clip, database=database, indexing_batch_size=args.batch, exclude_dirs=None)
    start, cpu_start = time.perf_counter(), time.process_time()
    rclip.ensure_index(args.folder)
    index_s, index_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    rclip.close()
    database.close()
    with sqlite3.connect(db_path) as conn:
        query = "SELECT COUNT(*) FROM images WHERE deleted IS NULL OR deleted = 0"
        (images,) = conn.execute(query).fetchone()
    report = {
        "images": images,
        "index_s": index_s,
        "index_cpu_s": index_cpu_s,
        "process_s": time.perf_counter() - PROCESS_START,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
