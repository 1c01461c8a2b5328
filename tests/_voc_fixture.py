"""Small Pascal VOC 2012 trees generated with Pillow, following the official conventions.

Official XML fields (folder, filename, source, size, segmented, object name/pose/truncated/
occluded/difficult/bndbox with 1-based integer coordinates), palette PNGs with the VOC
colormap where each object's outline is 255 (void), ``ImageSets/Main`` and
``ImageSets/Segmentation`` lists.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lakecore.importers.voc import VOC_CLASSES


def voc_palette() -> list[int]:
    """The VOC colormap (256 RGB triples, flattened): class bits spread over R, G, B."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


@dataclass
class VocObject:
    name: str
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (1-based, inclusive)
    difficult: bool = False
    truncated: bool = False
    occluded: bool = False
    pose: str = "Unspecified"


@dataclass
class VocImage:
    image_id: str
    width: int
    height: int
    objects: list[VocObject] = field(default_factory=list)
    segmented: bool = True


def _xml(img: VocImage) -> ET.Element:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{img.image_id}.jpg"
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "database").text = "The VOC2007 Database"
    ET.SubElement(src, "annotation").text = "PASCAL VOC2007"
    ET.SubElement(src, "image").text = "flickr"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(img.width)
    ET.SubElement(size, "height").text = str(img.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "1" if img.segmented else "0"
    for o in img.objects:
        el = ET.SubElement(root, "object")
        ET.SubElement(el, "name").text = o.name
        ET.SubElement(el, "pose").text = o.pose
        ET.SubElement(el, "truncated").text = str(int(o.truncated))
        ET.SubElement(el, "occluded").text = str(int(o.occluded))
        bb = ET.SubElement(el, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), o.box, strict=True):
            ET.SubElement(bb, tag).text = str(v)
        ET.SubElement(el, "difficult").text = str(int(o.difficult))
    ET.indent(root)
    return root


def _pixels(img: VocImage, o: VocObject) -> tuple[int, int, int, int]:
    """0-based inclusive pixel bounds of an object, within the image."""
    x0, y0, x1, y1 = (v - 1 for v in o.box)
    return x0, y0, min(x1, img.width - 1), min(y1, img.height - 1)


def _masks(img: VocImage) -> tuple[np.ndarray, np.ndarray]:
    cls = np.zeros((img.height, img.width), np.uint8)
    obj = np.zeros_like(cls)
    for n, o in enumerate(img.objects, start=1):
        x0, y0, x1, y1 = _pixels(img, o)
        cls[y0 : y1 + 1, x0 : x1 + 1] = VOC_CLASSES.index(o.name) + 1
        obj[y0 : y1 + 1, x0 : x1 + 1] = n
    for o in img.objects:  # void outline around every object
        x0, y0, x1, y1 = _pixels(img, o)
        for arr in (cls, obj):
            arr[y0, x0 : x1 + 1] = arr[y1, x0 : x1 + 1] = 255
            arr[y0 : y1 + 1, x0] = arr[y0 : y1 + 1, x1] = 255
    return cls, obj


def _png(arr: np.ndarray, path: Path) -> None:
    im = Image.fromarray(arr, mode="P")
    im.putpalette(voc_palette())
    im.save(path)


def random_images(n: int, seed: int = 0, size: tuple[int, int] = (64, 48)) -> list[VocImage]:
    """``n`` images with 1-3 objects each; the first has a difficult, truncated object."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        w, h = size
        img = VocImage(f"2012_{i:06d}", w, h)
        for k in range(rng.randint(1, 3)):
            x0, y0 = rng.randint(1, w // 2), rng.randint(1, h // 2)
            x1, y1 = rng.randint(x0 + 4, w), rng.randint(y0 + 4, h)
            obj = VocObject(
                rng.choice(VOC_CLASSES),
                (x0, y0, x1, y1),
                pose=rng.choice(["Frontal", "Left", "Unspecified"]),
            )
            if i == 0 and k == 0:
                obj.difficult = obj.truncated = obj.occluded = True
            img.objects.append(obj)
        out.append(img)
    return out


def make_voc_tree(
    root: Path,
    images: list[VocImage] | None = None,
    *,
    splits: dict[str, list[int]] | None = None,
    main_lists: bool = True,
    seg_lists: bool = True,
    masks: bool = True,
    devkit: bool = True,
    jpeg_quality: int = 90,
) -> tuple[Path, list[VocImage]]:
    """Write a VOC tree under ``root``; return the ``VOC2012`` folder and the images.

    ``splits`` maps split -> image indices (default: even indices train, odd val); the
    Segmentation lists hold only the images with masks (all, when ``masks``).
    """
    images = images if images is not None else random_images(4)
    splits = splits or {
        "train": list(range(0, len(images), 2)),
        "val": list(range(1, len(images), 2)),
    }
    voc = root / "VOCdevkit" / "VOC2012" if devkit else root / "VOC2012"
    for sub in (
        "JPEGImages",
        "Annotations",
        "SegmentationClass",
        "SegmentationObject",
        "ImageSets/Main",
        "ImageSets/Segmentation",
    ):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    palette = np.array(voc_palette(), np.uint8).reshape(256, 3)
    for img in images:
        cls, obj = _masks(img)
        pixels = palette[cls] // 2 + rng.integers(0, 60, (img.height, img.width, 3), np.uint8)
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(
            voc / "JPEGImages" / f"{img.image_id}.jpg", quality=jpeg_quality
        )
        ET.ElementTree(_xml(img)).write(voc / "Annotations" / f"{img.image_id}.xml")
        if masks and img.segmented:
            _png(cls, voc / "SegmentationClass" / f"{img.image_id}.png")
            _png(obj, voc / "SegmentationObject" / f"{img.image_id}.png")
    for split, idx in splits.items():
        ids = [images[i].image_id for i in idx]
        if main_lists:
            (voc / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        if seg_lists:
            seg = [images[i].image_id for i in idx if masks and images[i].segmented]
            (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text(
                "".join(f"{i}\n" for i in seg)
            )
    return voc, images


def draw_noise(path: Path, size: tuple[int, int], seed: int) -> None:
    """A small JPEG of random shapes (for trees built by hand)."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, (rng.randrange(256), 0, 0))
    d = ImageDraw.Draw(im)
    d.rectangle((2, 2, size[0] // 2, size[1] // 2), fill=(0, rng.randrange(256), 0))
    im.save(path, quality=90)
