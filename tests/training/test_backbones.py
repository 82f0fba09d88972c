"""The dlib ResNet read by our own parser reproduces dlib's face descriptor."""
import dlib
import numpy as np
import pytest
import torch

from engine.align import Aligner
from engine.assets import FACE_RESNET, dlib_model
from engine.detect import HogDetector
from training.backbones import available_backbones, create_backbone
from training.backbones.dlib_format import DlibFormatError, read_dlib_net
from training.backbones.dlib_resnet import add_prev


@pytest.fixture(scope="module")
def astronaut_chip_and_shape():
    from skimage import data
    rgb = data.astronaut()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    faces = HogDetector(min_face=HogDetector.native_min_face_px)(bgr)
    assert len(faces) == 1
    aligner = Aligner.create()
    _, chips = aligner(bgr, faces)
    rect = dlib.rectangle(*[int(round(v)) for v in faces.xyxy[0]])
    return rgb, chips[0], aligner.predictor(rgb, rect)


def test_parser_reads_every_layer_of_the_face_resnet():
    net = read_dlib_net(dlib_model(FACE_RESNET))
    kinds = net.kinds()
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds[-1] == "fc"
    assert net.input.params["size"] == (150, 150)
    assert net.input.params["mean_rgb"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)


def test_torch_resnet_matches_dlib_descriptor_on_a_real_face(astronaut_chip_and_shape):
    rgb, chip, shape = astronaut_chip_and_shape
    reference = np.array(dlib.face_recognition_model_v1(str(dlib_model(FACE_RESNET)))
                         .compute_face_descriptor(rgb, shape, 0, 0.25))
    net = create_backbone("dlib-resnet29").eval()
    x = (torch.from_numpy(chip[None].astype(np.float32)).permute(0, 3, 1, 2)
         - torch.tensor(net.mean_rgb).view(1, 3, 1, 1)) * net.scale
    with torch.no_grad():
        ours = net(x).numpy()[0]
    assert np.abs(ours - reference).max() <= 1e-4


def test_stem_then_forward_from_equals_the_whole_forward():
    net = create_backbone("dlib-resnet29").eval()
    x = torch.randn(2, 3, 150, 150)
    with torch.no_grad():
        whole = net(x)
        split = net.forward_from(net.stem(x, 8), 8)
    assert torch.allclose(whole, split, atol=1e-5)


def test_add_prev_zero_extends_the_smaller_tensor_like_dlib():
    a = torch.ones(1, 2, 1, 1)
    b = torch.full((1, 1, 2, 2), 2.0)
    out = add_prev(a, b)
    assert out.shape == (1, 2, 2, 2)
    assert out[0, 0, 0, 0] == 3 and out[0, 0, 1, 1] == 2 and out[0, 1, 0, 0] == 1 and out[0, 1, 1, 1] == 0


def test_truncated_file_is_refused_with_the_reason(tmp_path):
    src = dlib_model(FACE_RESNET).read_bytes()
    bad = tmp_path / "cut.dat"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(DlibFormatError, match="cut.dat: unexpected end of file"):
        read_dlib_net(bad)


def test_registry_lists_backbones_and_refuses_unknown_names():
    assert {"dlib-resnet29", "resnet-small", "cnn50-gray"} <= set(available_backbones())
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        create_backbone("nope")
    for name in ("resnet-small", "cnn50-gray"):
        out = create_backbone(name, pretrained=False).eval()(torch.zeros(2, 3, 150, 150))
        assert out.shape == (2, 128)
