"""The config schema: every key `reid` understands, with its default.

Key names follow fastreid wherever the concept is the same, so a fastreid YAML carries over.
Keys for concepts fastreid lacks are documented where they are defined. A key that is not
defined here is rejected when a YAML file or a command-line override names it.

Each section is owned by one part of the package (noted in its banner); keep keys grouped.
"""
from yacs.config import CfgNode as CN

_C = CN()

# Seed for Python, NumPy and torch RNGs, the samplers and the synthetic data draw.
# A negative value draws a random seed at start (written to OUTPUT_DIR/config.yaml).
_C.SEED = 0
# Where logs, checkpoints, metrics and the merged config go.
_C.OUTPUT_DIR = "logs/"
_C.CUDNN_BENCHMARK = False
# Write training scalars (console, OUTPUT_DIR/metrics.json, TensorBoard) every N iterations.
_C.LOG_PERIOD = 20

# ---------------------------------------------------------------------------------------------
# MODEL (reid/modeling)
# ---------------------------------------------------------------------------------------------
_C.MODEL = CN()
# "auto" = "cuda" when available, else "cpu"; or any torch device string ("cuda:1").
_C.MODEL.DEVICE = "auto"
_C.MODEL.META_ARCHITECTURE = "Baseline"
# Module-name prefixes frozen (no grad, BN in eval mode) for the first SOLVER.FREEZE_ITERS iterations.
_C.MODEL.FREEZE_LAYERS = []
# Weights of a whole trained model (eval-only, fine-tuning). Loaded with weights_only=True.
_C.MODEL.WEIGHTS = ""
# Normalisation applied inside the model to images given in 0..255.
_C.MODEL.PIXEL_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
_C.MODEL.PIXEL_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

# ---- MODEL.BACKBONE (reid/modeling/backbones) -----------------------------------------------
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# ResNet depth, "18x" / "34x" / "50x" / "101x" (fastreid spelling; plain 50 is accepted too).
_C.MODEL.BACKBONE.DEPTH = "50x"
_C.MODEL.BACKBONE.LAST_STRIDE = 1
# Channels of the backbone's output feature map (2048 for ResNet-50/101, 512 for 18/34).
_C.MODEL.BACKBONE.FEAT_DIM = 2048
# Normalisation layer: "BN", "syncBN", "FrozenBN", "GN".
_C.MODEL.BACKBONE.NORM = "BN"
_C.MODEL.BACKBONE.WITH_IBN = False
_C.MODEL.BACKBONE.WITH_SE = False
_C.MODEL.BACKBONE.WITH_NL = False
# Load ImageNet weights: PRETRAIN_PATH if given, else the published file from the torch hub cache.
_C.MODEL.BACKBONE.PRETRAIN = True
_C.MODEL.BACKBONE.PRETRAIN_PATH = ""

# ---- MODEL.HEADS (reid/modeling/heads) --------------------------------------------------------
_C.MODEL.HEADS = CN()
_C.MODEL.HEADS.NAME = "EmbeddingHead"
_C.MODEL.HEADS.NORM = "BN"
# Number of training identities; 0 = taken from the training set at build time.
_C.MODEL.HEADS.NUM_CLASSES = 0
# Reduction layer output size after pooling; 0 = no reduction layer.
_C.MODEL.HEADS.EMBEDDING_DIM = 0
_C.MODEL.HEADS.WITH_BNNECK = True
# Test feature taken "before" or "after" the BN neck.
_C.MODEL.HEADS.NECK_FEAT = "before"
# "GlobalAvgPool", "GlobalMaxPool", "GeneralizedMeanPooling", "GeneralizedMeanPoolingP", "AdaptiveAvgMaxPool".
_C.MODEL.HEADS.POOL_LAYER = "GlobalAvgPool"
# GeM power p (initial value when learnable).
_C.MODEL.HEADS.GEM_P = 3.0
# Classifier layer: "Linear", "NSL" (cosine), "CosFace", "ArcFace", "Circle"
# (fastreid's "CosSoftmax", "ArcSoftmax", "CircleSoftmax" are accepted).
_C.MODEL.HEADS.CLS_LAYER = "Linear"
_C.MODEL.HEADS.SCALE = 1.0
_C.MODEL.HEADS.MARGIN = 0.0

# ---- MODEL.LOSSES (reid/modeling/losses) ------------------------------------------------------
_C.MODEL.LOSSES = CN()
# Registered loss names, combined as sum(SCALE_i * loss_i).
_C.MODEL.LOSSES.NAME = ["CrossEntropyLoss"]

_C.MODEL.LOSSES.CE = CN()
# Label smoothing epsilon (0 = plain CE). A negative value selects fastreid's adaptive smoothing with ALPHA.
_C.MODEL.LOSSES.CE.EPSILON = 0.0
_C.MODEL.LOSSES.CE.ALPHA = 0.2
_C.MODEL.LOSSES.CE.SCALE = 1.0

_C.MODEL.LOSSES.TRI = CN()
_C.MODEL.LOSSES.TRI.MARGIN = 0.3
# "batch_hard", "all" or "weighted".
_C.MODEL.LOSSES.TRI.MINING = "batch_hard"
# "euclidean" or "cosine" (1 - cos).
_C.MODEL.LOSSES.TRI.DISTANCE = "euclidean"
# fastreid meaning: distance 2 - 2cos on L2-normalised features.
_C.MODEL.LOSSES.TRI.NORM_FEAT = False
_C.MODEL.LOSSES.TRI.SOFT_MARGIN = False
# fastreid compatibility: True = MINING batch_hard, False = MINING weighted; None = use MINING.
_C.MODEL.LOSSES.TRI.HARD_MINING = None
# Key of the model outputs dict the loss reads its features from.
_C.MODEL.LOSSES.TRI.FEAT_KEY = "features"
_C.MODEL.LOSSES.TRI.SCALE = 1.0

# ---------------------------------------------------------------------------------------------
# INPUT (reid/data/transforms)
# ---------------------------------------------------------------------------------------------
_C.INPUT = CN()
# [height, width]
_C.INPUT.SIZE_TRAIN = [256, 128]
_C.INPUT.SIZE_TEST = [256, 128]
# Resampling of every resize: "bicubic" (fastreid's choice) or "bilinear"; antialiased.
_C.INPUT.INTERPOLATION = "bicubic"
# Random crop to INPUT.SIZE_TRAIN after resizing to CROP.RESIZE (e.g. 288x144 -> 256x128); off = plain resize.
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = False
_C.INPUT.CROP.RESIZE = [288, 144]
# Random horizontal flip with probability PROB.
_C.INPUT.FLIP = CN()
_C.INPUT.FLIP.ENABLED = False
_C.INPUT.FLIP.PROB = 0.5
# Pad then random-crop back to SIZE_TRAIN (the bag-of-tricks augmentation).
_C.INPUT.PADDING = CN()
_C.INPUT.PADDING.ENABLED = False
# torchvision padding mode: "constant" (zeros), "edge", "reflect" or "symmetric".
_C.INPUT.PADDING.MODE = "constant"
# Pixels added on every side before the random crop.
_C.INPUT.PADDING.SIZE = 10
# Random erasing, applied to the 0..255 image; VALUE is the fill per channel (zeros = black).
_C.INPUT.REA = CN()
# Erased rectangle: torchvision's defaults, area 2 %..33 % of the image, aspect ratio 0.3..3.3.
_C.INPUT.REA.ENABLED = False
_C.INPUT.REA.PROB = 0.5
_C.INPUT.REA.VALUE = [0.485 * 255, 0.456 * 255, 0.406 * 255]

# ---------------------------------------------------------------------------------------------
# DATASETS (reid/data/datasets)
# ---------------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Root of the datasets; "" = the REID_DATASETS environment variable, else "datasets/".
_C.DATASETS.ROOT = ""
_C.DATASETS.NAMES = ["Market1501"]
_C.DATASETS.TESTS = ["Market1501"]
# Add query and gallery of the training datasets to the training set.
_C.DATASETS.COMBINEALL = False

_C.DATASETS.SYNTHETIC = CN()
_C.DATASETS.SYNTHETIC.SEED = 0
_C.DATASETS.SYNTHETIC.NUM_TRAIN_IDS = 150
_C.DATASETS.SYNTHETIC.NUM_TEST_IDS = 150
_C.DATASETS.SYNTHETIC.IMGS_PER_ID = 10
_C.DATASETS.SYNTHETIC.NUM_CAMERAS = 6
# [height, width] of the generated images.
_C.DATASETS.SYNTHETIC.IMAGE_SIZE = [128, 64]

# ---------------------------------------------------------------------------------------------
# DATALOADER (reid/data)
# ---------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
# "NaiveIdentitySampler" (PK: P ids x NUM_INSTANCE images) or "TrainingSampler" (shuffled images).
_C.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
# K of the PK sampler.
_C.DATALOADER.NUM_INSTANCE = 4
_C.DATALOADER.NUM_WORKERS = 4

# ---------------------------------------------------------------------------------------------
# SOLVER (reid/solver)
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
# "Adam", "AdamW" or "SGD".
_C.SOLVER.OPT = "Adam"
_C.SOLVER.MAX_EPOCH = 120
_C.SOLVER.BASE_LR = 3.5e-4
# LR multiplier of bias parameters.
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# LR multiplier of the head's parameters.
_C.SOLVER.HEADS_LR_FACTOR = 1.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0005
# Weight decay of normalisation layers' weights and biases.
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0005
# Weight decay of the other layers' biases.
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0005
# "MultiStepLR" or "CosineAnnealingLR".
_C.SOLVER.SCHED = "MultiStepLR"
# Epochs (counted from epoch 0) at which MultiStepLR multiplies the LR by GAMMA.
_C.SOLVER.STEPS = [40, 90]
_C.SOLVER.GAMMA = 0.1
# Constant-LR epochs before the cosine decay starts.
_C.SOLVER.DELAY_EPOCHS = 0
# LR the cosine decay reaches at the end of MAX_EPOCH (for BASE_LR; a group with another base LR
# ends at ETA_MIN_LR * its base / BASE_LR, so the groups' LR ratios stay fixed).
_C.SOLVER.ETA_MIN_LR = 1e-7
# Warm-up: the LR goes from WARMUP_FACTOR * BASE_LR to BASE_LR over WARMUP_ITERS iterations.
# Start factor of the warm-up: the first iteration runs at WARMUP_FACTOR * BASE_LR (the ratio
# paper's 1e-5 -> 1e-3: BASE_LR 1e-3, WARMUP_FACTOR 0.01). The factor multiplies the main schedule.
_C.SOLVER.WARMUP_FACTOR = 0.1
# Warm-up length in iterations; 0 = no warm-up (unless WARMUP_EPOCHS is set).
_C.SOLVER.WARMUP_ITERS = 0
# Warm-up length in epochs (converted with the iterations per epoch); set this or WARMUP_ITERS, not both.
_C.SOLVER.WARMUP_EPOCHS = 0
# "linear", "constant" or "exp".
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.FREEZE_ITERS = 0
# Mini-batch size (P * K for the PK sampler), over all GPUs.
_C.SOLVER.IMS_PER_BATCH = 64
# Save a checkpoint every N epochs (the last one is always saved).
_C.SOLVER.CHECKPOINT_PERIOD = 20

# ---------------------------------------------------------------------------------------------
# TEST (reid/evaluation)
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every N epochs (and after the last); 0 = only after the last.
_C.TEST.EVAL_PERIOD = 20
_C.TEST.IMS_PER_BATCH = 128
# "cosine" (1 - cos of L2-normalised features) or "euclidean".
_C.TEST.METRIC = "cosine"
_C.TEST.FLIP = CN()
# Average each image's feature with its horizontally flipped copy's.
_C.TEST.FLIP.ENABLED = False
