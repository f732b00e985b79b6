"""Models: backbones (torchvision ResNets, MobileNetV2, small CNN, GroupNorm), heads, the GRL.

Imported by attacks, modules and above; imports nothing of the package but itself.
"""
