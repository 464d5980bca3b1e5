import io
import tarfile

import pytest

from cnnlab.data.tarscan import scan_tar


def _write(path, fmt, extra_pax=False):
    long_dir = "deep/" + "x" * 120  # longer than the 100-byte ustar name field
    with tarfile.open(path, "w", format=fmt) as tar:
        if extra_pax:
            tar.pax_headers = {"comment": "global header, as git archive writes"}
        for name, data in [("top/train/cat/0.png", b"abc"), (f"{long_dir}/file.jpg", b"q" * 700),
                           ("top/ünïcode/ß.bmp", b""), ("top/big.bin", bytes(range(256)) * 5)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("top/dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("top/link")
        link.type, link.linkname = tarfile.SYMTYPE, "train/cat/0.png"
        tar.addfile(link)


def _reference(path):
    with tarfile.open(path) as tar:
        return [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isreg()]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("extra_pax", [False, True])
def test_listing_equals_tarfile(tmp_path, fmt, extra_pax):
    path = tmp_path / "a.tar"
    _write(path, fmt, extra_pax)
    listing = scan_tar(path)
    assert listing == _reference(path)
    assert len(listing) == 4
    raw = path.read_bytes()
    name, offset, size = listing[1]
    assert raw[offset:offset + size] == b"q" * 700


def test_declines_what_it_cannot_vouch_for(tmp_path):
    path = tmp_path / "a.tar"
    _write(path, tarfile.PAX_FORMAT)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF  # breaks the first header's checksum
    (tmp_path / "bad.tar").write_bytes(bytes(raw))
    assert scan_tar(tmp_path / "bad.tar") is None
    (tmp_path / "cut.tar").write_bytes(path.read_bytes()[:1536 + 100])
    assert scan_tar(tmp_path / "cut.tar") is None
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tar:
        tar.add(path, arcname="a.tar")
    assert scan_tar(tmp_path / "a.tar.gz") is None
    (tmp_path / "empty.tar").write_bytes(b"")
    assert scan_tar(tmp_path / "empty.tar") == []
