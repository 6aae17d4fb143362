"""Conformance of amun's exported-program interpreter against PyTorch on
real architectures from torchvision and timm (issue 22). For each
architecture (a small configuration where a CPU needs one), this writes:

    OUT/NAME.pt2               exported in train mode (stochastic depth and
                               dropout in the graph), dynamic batch
    OUT/NAME-eval.pt2          exported in eval mode (what users export)
    OUT/NAME.ref.safetensors   x, r, and for eval and train mode PyTorch's
                               logits, dL/dx and dL/dparameter (L = Σ logits·r;
                               train mode after torch.manual_seed(123))
    OUT/NAME.json              its source, configuration and input size, or
                               why it could not be exported

`cargo run --release -p amun --example exported_conformance -- OUT` then
runs each in amun and prints the table (docs/EXPORTED.md).

    python bench/exported_conformance.py OUT [NAME ...]
"""

import copy
import json
import os
import sys
import time

from safetensors.torch import save_file
import torch
import torchvision
import timm

tvm = torchvision.models
SEED = 123


def archs():
    """(name, source, constructor, input size, note)."""
    yield "resnet18", "torchvision", lambda: tvm.resnet18(num_classes=10), 32, ""
    yield "resnet50", "torchvision", lambda: tvm.resnet50(num_classes=10), 32, ""
    yield "wide_resnet50_2", "torchvision", lambda: tvm.wide_resnet50_2(num_classes=10), 32, ""
    yield "mobilenet_v2", "torchvision", lambda: tvm.mobilenet_v2(num_classes=10), 32, ""
    yield "mobilenet_v3_small", "torchvision", lambda: tvm.mobilenet_v3_small(num_classes=10), 32, ""
    yield "efficientnet_b0", "torchvision", lambda: tvm.efficientnet_b0(num_classes=10), 32, "stochastic depth 0.2"
    yield "regnet_y_400mf", "torchvision", lambda: tvm.regnet_y_400mf(num_classes=10), 32, ""
    yield "densenet121", "torchvision", lambda: tvm.densenet121(num_classes=10), 32, ""
    yield "convnext_tiny", "torchvision", lambda: tvm.convnext_tiny(num_classes=10), 32, "stochastic depth 0.1"
    yield "vit (4 layers, dim 64)", "torchvision", lambda: tvm.VisionTransformer(
        image_size=32, patch_size=4, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    ), 32, "nn.MultiheadAttention"
    yield "swin_t (dim 32, depths 2,2)", "torchvision", lambda: tvm.SwinTransformer(
        patch_size=[2, 2], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=10
    ), 32, "shifted windows, stochastic depth 0.1"
    yield "swin_v2 (dim 32, depths 2,2)", "torchvision", lambda: tvm.SwinTransformer(
        patch_size=[2, 2], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=10,
        block=tvm.swin_transformer.SwinTransformerBlockV2, downsample_layer=tvm.swin_transformer.PatchMergingV2,
    ), 32, "log-spaced position bias"
    yield "maxvit (2 stages, dim 16/32)", "torchvision", lambda: tvm.MaxVit(
        input_size=(32, 32), stem_channels=16, partition_size=2, block_channels=[16, 32], block_layers=[1, 1],
        head_dim=8, stochastic_depth_prob=0.1, num_classes=10,
    ), 32, ""
    yield "squeezenet1_1", "torchvision", lambda: tvm.squeezenet1_1(num_classes=10), 64, ""
    yield "shufflenet_v2_x0_5", "torchvision", lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 32, ""
    yield "mnasnet0_5", "torchvision", lambda: tvm.mnasnet0_5(num_classes=10), 32, ""
    yield "googlenet", "torchvision", lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=True), 32, "without auxiliary heads"
    yield "vgg11_bn", "torchvision", lambda: tvm.vgg11_bn(num_classes=10), 32, ""
    yield "alexnet", "torchvision", lambda: tvm.alexnet(num_classes=10), 64, ""
    yield "vit_tiny_patch16 (depth 2, patch 4)", "timm", lambda: timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2, num_classes=10
    ), 32, ""
    yield "deit_tiny_distilled (depth 2, patch 4)", "timm", lambda: timm.create_model(
        "deit_tiny_distilled_patch16_224", img_size=32, patch_size=4, depth=2, num_classes=10
    ), 32, ""
    yield "convnext_atto", "timm", lambda: timm.create_model("convnext_atto", num_classes=10, drop_path_rate=0.1), 32, "drop path 0.1"
    yield "efficientnet_b0", "timm", lambda: timm.create_model("efficientnet_b0", num_classes=10, drop_path_rate=0.2), 32, "drop path 0.2"
    yield "mobilevit_xxs", "timm", lambda: timm.create_model("mobilevit_xxs", num_classes=10), 64, ""
    yield "resnet18d", "timm", lambda: timm.create_model("resnet18d", num_classes=10), 32, ""
    yield "swin (dim 32, window 4)", "timm", lambda: timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=32, window_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4),
        num_classes=10,
    ), 32, ""
    yield "levit_128s", "timm", lambda: timm.create_model("levit_128s", img_size=32, num_classes=10), 32, ""
    yield "ghostnet_100", "timm", lambda: timm.create_model("ghostnet_100", num_classes=10), 32, ""
    yield "repvgg_a0", "timm", lambda: timm.create_model("repvgg_a0", num_classes=10), 32, ""
    yield "poolformer_s12", "timm", lambda: timm.create_model("poolformer_s12", num_classes=10), 32, ""
    yield "edgenext_xx_small", "timm", lambda: timm.create_model("edgenext_xx_small", num_classes=10), 64, ""
    yield "mobilenetv4_conv_small", "timm", lambda: timm.create_model("mobilenetv4_conv_small", num_classes=10), 32, ""
    yield "regnety_002", "timm", lambda: timm.create_model("regnety_002", num_classes=10), 32, ""
    yield "dla34", "timm", lambda: timm.create_model("dla34", num_classes=10), 32, ""
    yield "cait_xxs24 (depth 2, patch 4)", "timm", lambda: timm.create_model(
        "cait_xxs24_224", img_size=32, patch_size=4, depth=2, num_classes=10
    ), 32, ""
    yield "beit (depth 2, dim 64)", "timm", lambda: timm.create_model(
        "beit_base_patch16_224", img_size=32, patch_size=4, depth=2, embed_dim=64, num_heads=2, num_classes=10
    ), 32, "relative position bias"
    yield "coatnet_nano_rw", "timm", lambda: timm.create_model("coatnet_nano_rw_224", img_size=(64, 64), num_classes=10), 64, ""
    yield "mlp-mixer (2 blocks, dim 64, patch 4)", "timm", lambda: timm.models.mlp_mixer.MlpMixer(
        img_size=32, patch_size=4, num_blocks=2, embed_dim=64, num_classes=10
    ), 32, ""


def save_safetensors(path, tensors):
    save_file({k: t.detach().contiguous().cpu() for k, t in tensors.items()}, path)


def pass_of(m, x, r, mode):
    m.train(mode == "train")
    m.zero_grad()
    x = x.clone().requires_grad_(True)
    torch.manual_seed(SEED)
    logits = m(x)
    (logits * r).sum().backward()
    out = {f"{mode}.logits": logits, f"{mode}.grad_input": x.grad}
    for k, p in m.named_parameters():
        if p.grad is not None:
            out[f"{mode}.grad.{k}"] = p.grad.clone()
    return out


def safe(name):
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name.split(" ")[0])


def main(out, only):
    os.makedirs(out, exist_ok=True)
    for name, source, make, size, note in archs():
        key = f"{source}-{safe(name)}"
        if only and key not in only and safe(name) not in only:
            continue
        meta = {"name": name, "source": source, "size": size, "note": note, "key": key}
        t = time.time()
        try:
            torch.manual_seed(0)
            m = make()
            meta["params"] = sum(p.numel() for p in m.parameters())
            g = torch.Generator().manual_seed(1)
            x = torch.rand(4, 3, size, size, generator=g)
            r = torch.randn(4, 10, generator=g)
            dyn = ({0: torch.export.Dim("batch", min=2, max=1024)},)
            for mode, path in [("train", f"{out}/{key}.pt2"), ("eval", f"{out}/{key}-eval.pt2")]:
                mm = copy.deepcopy(m).train(mode == "train")
                ep = torch.export.export(mm, (x,), dynamic_shapes=dyn)
                torch.export.save(ep, path)
            ref = {"x": x, "r": r}
            ref.update(pass_of(copy.deepcopy(m), x, r, "eval"))
            ref.update(pass_of(copy.deepcopy(m), x, r, "train"))
            save_safetensors(f"{out}/{key}.ref.safetensors", ref)
            meta["ok"] = True
        except Exception as e:  # recorded in the table
            meta["ok"] = False
            meta["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        meta["seconds"] = round(time.time() - t, 1)
        with open(f"{out}/{key}.json", "w") as f:
            json.dump(meta, f)
        print(key, "ok" if meta["ok"] else meta["error"], f"{meta['seconds']}s", flush=True)
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__}
    with open(f"{out}/versions.json", "w") as f:
        json.dump(versions, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
