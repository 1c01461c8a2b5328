"""The README's demo: make a small synthetic dataset in a local lake and print a summary.

``python -m lakecore.demo [--lake ./demo-lake] [--images 24]``. It needs nothing outside the
repository: the images are drawn with Pillow.
"""

from __future__ import annotations

import argparse
import io
import random
import sys

from PIL import Image, ImageDraw

import lakecore


def draw_image(rng: random.Random, size: int = 128) -> tuple[bytes, list[tuple[str, tuple[float, float, float, float]]]]:
    """One PNG with 1-3 shapes and their exact boxes (x, y, w, h)."""
    img = Image.new("RGB", (size, size), (rng.randrange(40), rng.randrange(40), rng.randrange(40)))
    draw = ImageDraw.Draw(img)
    boxes = []
    for _ in range(rng.randint(1, 3)):
        w, h = rng.randint(16, 48), rng.randint(16, 48)
        x, y = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
        shape = rng.choice(["square", "circle"])
        color = (rng.randint(128, 255), rng.randint(128, 255), rng.randint(128, 255))
        if shape == "square":
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=color)
        else:
            draw.ellipse([x, y, x + w - 1, y + h - 1], fill=color)
        boxes.append((shape, (float(x), float(y), float(w), float(h))))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), boxes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", default="./demo-lake")
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    lake = lakecore.connect(args.lake)
    drawn = [draw_image(rng) for _ in range(args.images)]
    refs = lake.objects.put_many([png for png, _ in drawn])
    print(f"lake {lake.info.lake_id} at {lake.uri}")
    print(f"stored {len(refs)} images ({sum(r.size for r in refs)} bytes)")
    back = lake.objects.get_many(refs[:3])
    assert back == [png for png, _ in drawn[:3]]
    print("read back 3 images byte-exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
