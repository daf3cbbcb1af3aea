"""Lip generation from speech and one face image (Chen et al. 2018), in one subpackage.

Modules: ``model`` (the generator), ``critics`` (flow, landmark, correlation, autoencoder and
discriminator networks), ``bundle`` (several networks in one safetensors file), ``windows``
(training windows from the generation cache), ``training`` (losses and training steps),
``pipeline`` (the whole training recipe), ``generate`` (long-audio generation, ``avsync
generate``), ``dub`` (``avsync generate --video``: new speech on a face video), ``motion`` (lip
landmark motion from speech + a warp of the identity image, a measured deviation), ``metrics``
(LMD, SSIM, PSNR, CPBD, LSE), ``evaluate`` (the held-out benchmark) and ``video_metrics``
(``avsync metrics``). The command line is ``avsync.cli_gen``.
"""
