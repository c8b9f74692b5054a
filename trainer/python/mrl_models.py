"""PyTorch twins of mrl-trainer's models, for loading an export and for the PyTorch baseline.

Usage (see docs/export.md):
    import json, torch, mrl_models
    cfg = json.load(open("RUN/export/model.json"))
    model = mrl_models.MrlModel(cfg)
    model.load_state_dict(torch.load("RUN/export/model_state.pt"))
    z = model.encoder(mrl_models.normalize(uint8_images_n_1_28_28))   # [N, d]

Layer order and names match trainer/model.cc, so the exported state dict loads unchanged.
"""
import torch
import torch.nn as nn

MEAN, STD = 0.2860, 0.3530


def normalize(images_uint8):
    """uint8 [N, C, H, W] -> float, normalized as the trainer does."""
    return (images_uint8.float() / 255.0 - MEAN) / STD


def conv4(in_channels, channels, dim, batch_norm=True, pool_cols=1):
    layers, cin = [], in_channels
    for i, c in enumerate(channels):
        layers.append(nn.Conv2d(cin, c, 3, padding=1, bias=not batch_norm))
        layers += [nn.BatchNorm2d(c), nn.ReLU()] if batch_norm else [nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
        cin = c
    # pool_cols > 1 (fmnist3: three items side by side) keeps that many columns of the last map.
    layers += [nn.AdaptiveAvgPool2d((1, pool_cols)), nn.Flatten(), nn.Linear(cin * pool_cols, dim)]
    return nn.Sequential(*layers)


def mlp(in_features, hidden, dim, batch_norm=True):
    layers, cin = [], in_features
    for h in hidden:
        layers += [nn.Linear(cin, h)] + ([nn.BatchNorm1d(h)] if batch_norm else []) + [nn.ReLU()]
        cin = h
    layers.append(nn.Linear(cin, dim))
    return nn.Sequential(*layers)


class MrlModel(nn.Module):
    """encoder -> z [N, d]; heads as in the trainer (mrl: one per nesting dim; mrl-e and ff: one)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, classes = cfg["dim"], cfg["num_classes"]
        if cfg["encoder"] == "conv4":
            self.encoder = conv4(cfg.get("in_channels", 1), cfg["conv_channels"], d,
                                 cfg.get("batch_norm", True), max(1, cfg.get("pool_cols", 1)))
        elif cfg["encoder"] == "mlp":
            self.encoder = mlp(cfg["in_features"], cfg["mlp_hidden"], d, cfg.get("batch_norm", True))
        else:
            raise ValueError("Python twin covers conv4 and mlp; got " + cfg["encoder"])
        if cfg["head"] == "mrl":
            self.heads = nn.ModuleList(nn.Linear(m, classes) for m in cfg["nesting"])
        elif cfg["head"] == "mrl-e":
            self.heads = nn.ModuleList([nn.Linear(d, classes)])
        else:
            self.heads = nn.ModuleList([nn.Linear(cfg["ff_dim"], classes)])

    def forward(self, x):
        return self.encoder(x)

    def train_logits(self, z):
        cfg = self.cfg
        if cfg["head"] == "mrl":
            return [h(z[:, :m]) for h, m in zip(self.heads, cfg["nesting"])]
        if cfg["head"] == "mrl-e":
            w, b = self.heads[0].weight, self.heads[0].bias
            return [z[:, :m] @ w[:, :m].t() + b for m in cfg["nesting"]]
        return [self.heads[0](z[:, : cfg["ff_dim"]])]
