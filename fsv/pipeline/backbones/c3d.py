"""C3D (Tran et al. 2015) as a 16-frame clip feature extractor: fc6 / fc7 (4096-d) or pool5 (8192-d).

Weights: the common Sports-1M checkpoint ``c3d.pickle`` (DavideA/c3d-pytorch), a direct conversion of
the Caffe model ``conv3d_deepnetA_sport1m_iter_1900000``: a state dict with ``conv1``, ``conv2``,
``conv3a``, ``conv3b``, ``conv4a``, ``conv4b``, ``conv5a``, ``conv5b``, ``fc6``, ``fc7`` and ``fc8``
(487 Sports-1M classes). :class:`C3D` uses exactly those names, so the file loads strictly.

The network reproduces Caffe C3D-v1.0 (``c3d_sport1m_feature_extractor_frm.prototxt``):

* 3x3x3 convolutions (padding 1) each followed by ReLU; pool1 is 1x2x2, pool2..pool5 are 2x2x2.
* pool5 takes 512x2x7x7 to 512x1x4x4: Caffe's Pooling3D rounds the output size up and starts its
  windows at 0 (``hstart = ph * stride``), i.e. windows {0,1}, {2,3}, {4,5}, {6}. That is
  ``ceil_mode=True`` here. (DavideA's port pads by one instead, which shifts the windows by a pixel.)
* Features are taken after ReLU: Caffe's ``relu6`` / ``relu7`` run in place on ``fc6-1`` / ``fc7-1``,
  so the ``fc6-1`` / ``fc7-1`` blobs that C3D's ``extract_image_features`` tool writes are
  post-ReLU. Dropout is the identity at test time, in Caffe as here.

Input, as the Caffe weights expect (C3D-v1.0 ``VIDEO_DATA`` layer and ``image_io``): frames read by
OpenCV, hence **BGR** in 0..255; resized to 128x171 (``new_height``/``new_width``, bilinear) and stored
as uint8; the Sports-1M mean ``sport1m_train16_128_mean.binaryproto`` (3x16x128x171) subtracted; the
centre 112x112 taken at offsets (8, 29); no scaling. :func:`c3d_preprocess` does this with the mean
cube's per-channel means **B=90.25, G=97.66, R=101.41** (computed from the converted cube
``c3d_mean.npy``, shape 1x3x16x128x171, in DavideA/c3d-pytorch issue #1; with BGR order and these
means that issue reports the repository's example clip classified as tennis at 0.99994). The
ImageNet-like (104, 117, 123) values sometimes quoted for C3D are not the Sports-1M mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

C3D_LAYERS = ("pool5", "fc6", "fc7")
CLIP_LENGTH = 16
RESIZE_HW = (128, 171)
CROP = 112
# per-channel means of sport1m_train16_128_mean.binaryproto, in the network's BGR input order
SPORTS1M_MEAN_BGR = (90.25, 97.66, 101.41)


class C3D(nn.Module):
    """``forward(clips[N, 3, 16, 112, 112]) -> [N, 4096]`` (fc6 / fc7, post-ReLU) or ``[N, 8192]`` (pool5).

    ``clips`` are BGR, mean-subtracted, in 0..255 units: the output of :func:`c3d_preprocess`,
    stacked on a new batch axis.
    """

    def __init__(self, num_classes: int = 487, layer: str = "fc6") -> None:
        super().__init__()
        if layer not in C3D_LAYERS:
            raise ValueError(f"layer must be one of {C3D_LAYERS}, not {layer!r}")
        self.layer = layer
        self.conv1 = nn.Conv3d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv3d(64, 128, 3, padding=1)
        self.conv3a = nn.Conv3d(128, 256, 3, padding=1)
        self.conv3b = nn.Conv3d(256, 256, 3, padding=1)
        self.conv4a = nn.Conv3d(256, 512, 3, padding=1)
        self.conv4b = nn.Conv3d(512, 512, 3, padding=1)
        self.conv5a = nn.Conv3d(512, 512, 3, padding=1)
        self.conv5b = nn.Conv3d(512, 512, 3, padding=1)
        self.pool1 = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
        self.pool = nn.MaxPool3d(2, stride=2)
        self.pool5 = nn.MaxPool3d(2, stride=2, ceil_mode=True)
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(0.5)

    def _pool5(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 16, 112, 112] -> [N, 8192]``: the conv tower, flattened in Caffe's (C, T, H, W) order."""
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3b(F.relu(self.conv3a(x)))))
        x = self.pool(F.relu(self.conv4b(F.relu(self.conv4a(x)))))
        x = self.pool5(F.relu(self.conv5b(F.relu(self.conv5a(x)))))
        return torch.flatten(x, 1)

    def _fc7(self, fc6: torch.Tensor) -> torch.Tensor:
        """``[N, 4096]`` post-ReLU fc6 -> ``[N, 4096]`` post-ReLU fc7."""
        return F.relu(self.fc7(self.dropout(fc6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pool5(x)
        if self.layer == "pool5":
            return x
        x = F.relu(self.fc6(x))
        return x if self.layer == "fc6" else self._fc7(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Sports-1M class scores ``[N, num_classes]`` before softmax (for checking converted weights)."""
        return self.fc8(self.dropout(self._fc7(F.relu(self.fc6(self._pool5(x))))))


def c3d_preprocess(frames: np.ndarray) -> torch.Tensor:
    """One clip as C3D's Caffe data layer fed it: ``(T, H, W, 3)`` uint8 RGB -> ``[3, T, 112, 112]`` float32.

    Bilinear resize to 128x171 (no antialiasing, like ``cv::resize``, whose fixed-point result it
    matches within one grey level), rounded back to uint8 as the Caffe datum stored it; RGB -> BGR; the Sports-1M per-channel mean (:data:`SPORTS1M_MEAN_BGR`)
    subtracted; centre 112x112 crop at (8, 29). Values stay in 0..255 units (about -102..165).
    ``T`` is normally :data:`CLIP_LENGTH`.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=RESIZE_HW, mode="bilinear", align_corners=False).round_().clamp_(0.0, 255.0)
    top, left = (RESIZE_HW[0] - CROP) // 2, (RESIZE_HW[1] - CROP) // 2
    x = x[:, [2, 1, 0], top : top + CROP, left : left + CROP]
    x -= torch.tensor(SPORTS1M_MEAN_BGR).view(1, 3, 1, 1)
    return x.permute(1, 0, 2, 3).contiguous()
