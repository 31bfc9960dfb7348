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
# Names of the meta-architecture's modules (e.g. "backbone"; dotted paths allowed) frozen for the
# first SOLVER.FREEZE_ITERS iterations: no updates, normalisation statistics kept (fastreid's meaning).
_C.MODEL.FREEZE_LAYERS = []
# Weights of a whole trained model (eval-only, fine-tuning). Loaded with weights_only=True.
_C.MODEL.WEIGHTS = ""
# Normalisation applied inside the model to images given in 0..255.
_C.MODEL.PIXEL_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
_C.MODEL.PIXEL_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

# ---- MODEL.MGN (reid/modeling/meta_arch/mgn.py; used when META_ARCHITECTURE is "MGN") -----------
_C.MODEL.MGN = CN()
# Stripe count of each part branch (b2, b3, ...), after the global branch b1. [2, 3] = the MGN paper:
# heads b1, b2, b3, b21, b22, b31, b32, b33.
_C.MODEL.MGN.PARTS = [2, 3]
# Registered losses computed on every head's outputs (they read logits / classifier weights);
# all other losses are computed on the feature groups b1, b2, b3, b2_parts, b3_parts.
_C.MODEL.MGN.HEAD_LOSSES = ["CrossEntropyLoss"]
# Weight of each head, in the order b1, b2, b3, b21, b22, b31, b32, b33; [] = 1/number of heads
# each (fastreid's 0.125), multiplied with the loss's SCALE.
_C.MODEL.MGN.HEAD_WEIGHTS = []
# Weight of each feature group, in the order b1, b2, b3, b2_parts, b3_parts; [] = 1/number of groups
# each (fastreid's 0.2), multiplied with the loss's SCALE.
_C.MODEL.MGN.GROUP_WEIGHTS = []

# ---- MODEL.BACKBONE (reid/modeling/backbones) -----------------------------------------------
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
# ResNet depth, "18x" / "34x" / "50x" / "101x" (fastreid spelling; plain 50 is accepted too).
_C.MODEL.BACKBONE.DEPTH = "50x"
_C.MODEL.BACKBONE.LAST_STRIDE = 1
# Channels of the backbone's output feature map (2048 for ResNet-50/101, 512 for 18/34);
# 0 = taken from the backbone. A non-zero value must match the backbone (checked at build time).
_C.MODEL.BACKBONE.FEAT_DIM = 0
# Normalisation layer: "BN", "syncBN", "FrozenBN", "GN".
_C.MODEL.BACKBONE.NORM = "BN"
# IBN-a: instance norm on half the channels of the first norm of every block of layer1-layer3.
_C.MODEL.BACKBONE.WITH_IBN = False
# Squeeze-and-excitation (reduction 16) before each residual sum.
_C.MODEL.BACKBONE.WITH_SE = False
# Non-local blocks after the last blocks of layer2 and layer3 (2 and 3 for 34x/50x, 2 and 9 for 101x, 1 and 1 for 18x).
_C.MODEL.BACKBONE.WITH_NL = False
# Load ImageNet weights: PRETRAIN_PATH if given, else the published file (torchvision's resnet*.pth,
# IBN-Net's resnet*_ibn_a-*.pth with WITH_IBN) from torch.hub.get_dir()/checkpoints, downloaded
# there when missing and the network allows.
_C.MODEL.BACKBONE.PRETRAIN = True
_C.MODEL.BACKBONE.PRETRAIN_PATH = ""

# ---- MODEL.HEADS (reid/modeling/heads) --------------------------------------------------------
_C.MODEL.HEADS = CN()
# "EmbeddingHead" (BN-neck head), "RatioHead" (ratio-loss paper: GAP-BN-FC-BN-L2, cosine classifier),
# "UnifiedHead" (unified-view paper: reduction + BN = the 1024-d ReID feature).
_C.MODEL.HEADS.NAME = "EmbeddingHead"
# Normalisation layer of the heads: "BN", "syncBN", "FrozenBN", "GN".
_C.MODEL.HEADS.NORM = "BN"
# Number of training identities; 0 = taken from the training set at build time.
_C.MODEL.HEADS.NUM_CLASSES = 0
# Reduction layer output size after pooling; 0 = no reduction layer in EmbeddingHead, the papers'
# 1024 in RatioHead and UnifiedHead.
_C.MODEL.HEADS.EMBEDDING_DIM = 0
# BN neck of EmbeddingHead (BatchNorm with a frozen bias between the features and the classifier).
_C.MODEL.HEADS.WITH_BNNECK = True
# fastreid's meaning: the training output "features" (what metric losses read by default) is the
# pooled feature "before" the BN neck or the neck's output "after" it; "neck_features" is always
# the neck's output, and the test feature is the neck's output.
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
# Cosine classifiers (NSL, CosFace, ArcFace, Circle): learn the scale s as a parameter log s,
# initialised from MODEL.HEADS.SCALE (NormFace style). Not valid with the Linear classifier.
_C.MODEL.HEADS.LEARN_SCALE = False

# ---- MODEL.LOSSES (reid/modeling/losses) ------------------------------------------------------
_C.MODEL.LOSSES = CN()
# Registered loss names, combined as sum(SCALE_i * loss_i).
_C.MODEL.LOSSES.NAME = ["CrossEntropyLoss"]

# Every block: SCALE is the loss's weight in the sum; FEAT_KEY (feature losses) is the key of the
# model outputs dict the loss reads its B x D features from. SIM_SCALE is the multiplier s of the
# similarities or distances (temperature 1/s); LEARN_SCALE makes it a parameter log s initialised
# from SIM_SCALE. FEAT_DIM (losses owning per-class parameters or a mapping): the features' dim,
# 0 = the head's output dim (MODEL.HEADS.EMBEDDING_DIM if > 0, else MODEL.BACKBONE.FEAT_DIM).
# Losses with per-class parameters read the number of classes from MODEL.HEADS.NUM_CLASSES.

# CrossEntropyLoss: CE on outputs["logits"] (after the classifier's margin and scale).
_C.MODEL.LOSSES.CE = CN()
# Label smoothing epsilon (0 = plain CE): targets (1 - eps) on the true class + eps / C everywhere.
# A negative value selects fastreid's adaptive smoothing: eps_i = ALPHA * p_i(true class), detached,
# targets 1 - eps_i on the true class and eps_i / (C - 1) on each other class.
_C.MODEL.LOSSES.CE.EPSILON = 0.0
# Adaptive smoothing factor, used only when EPSILON < 0.
_C.MODEL.LOSSES.CE.ALPHA = 0.2
# OHEM on the ID loss: drop the floor(r * B) samples with the lowest loss, average the rest (0 = off).
_C.MODEL.LOSSES.CE.OHEM_RATIO = 0.0
_C.MODEL.LOSSES.CE.SCALE = 1.0

# TripletLoss.
_C.MODEL.LOSSES.TRI = CN()
# Hinge margin m: [d_ap - d_an + m]_+. 0.0 = soft margin (fastreid meaning).
_C.MODEL.LOSSES.TRI.MARGIN = 0.3
# "batch_hard" (hardest positive / negative per anchor), "all" (every triplet) or "weighted"
# (softmax-weighted positives and negatives).
_C.MODEL.LOSSES.TRI.MINING = "batch_hard"
# "euclidean", "sqeuclidean" or "cosine" (1 - cos).
_C.MODEL.LOSSES.TRI.DISTANCE = "euclidean"
# L2-normalise the features before a (sq)euclidean distance.
_C.MODEL.LOSSES.TRI.NORMALIZE = False
# fastreid meaning: distance 2 - 2cos on L2-normalised features (requires DISTANCE "euclidean").
_C.MODEL.LOSSES.TRI.NORM_FEAT = False
# Soft margin softplus(SIM_SCALE * (d_ap - d_an) + MARGIN) instead of the hinge.
_C.MODEL.LOSSES.TRI.SOFT_MARGIN = False
# Scale of the soft margin (must stay 1.0 / False with the hinge).
_C.MODEL.LOSSES.TRI.SIM_SCALE = 1.0
_C.MODEL.LOSSES.TRI.LEARN_SCALE = False
# fastreid compatibility: True = MINING batch_hard, False = MINING weighted; None = use MINING.
_C.MODEL.LOSSES.TRI.HARD_MINING = None
_C.MODEL.LOSSES.TRI.FEAT_KEY = "features"
_C.MODEL.LOSSES.TRI.SCALE = 1.0

# ContrastiveLoss over all pairs: positives [d - POS_MARGIN]_+, negatives [NEG_MARGIN - d]_+ (Euclidean d),
# each part averaged over its pairs.
_C.MODEL.LOSSES.CONTRASTIVE = CN()
# Positive pairs are pulled in until their distance is POS_MARGIN (0 = all the way).
_C.MODEL.LOSSES.CONTRASTIVE.POS_MARGIN = 0.0
# Negative pairs are pushed out until their distance is NEG_MARGIN.
_C.MODEL.LOSSES.CONTRASTIVE.NEG_MARGIN = 1.0
# Square both parts and halve them (the survey's form: d^2 / 2 and [m - d]_+^2 / 2).
_C.MODEL.LOSSES.CONTRASTIVE.SQUARED = True
# L2-normalise the features first.
_C.MODEL.LOSSES.CONTRASTIVE.NORMALIZE = False
_C.MODEL.LOSSES.CONTRASTIVE.FEAT_KEY = "features"
_C.MODEL.LOSSES.CONTRASTIVE.SCALE = 1.0

# CenterLoss: mean_i |f_i - c_{y_i}|^2 with NUM_CLASSES learned centers (in the loss module).
_C.MODEL.LOSSES.CENTER = CN()
_C.MODEL.LOSSES.CENTER.FEAT_DIM = 0
# Absolute LR of the centers' own optimiser group (SOLVER.OPT, no weight decay). The centers'
# gradient includes the weight SCALE; bag of tricks' separate SGD at 0.5 on the unweighted loss
# corresponds to SOLVER.OPT "SGD" with LR 0.5 / SCALE.
_C.MODEL.LOSSES.CENTER.LR = 3.5e-4
_C.MODEL.LOSSES.CENTER.FEAT_KEY = "features"
# Bag-of-tricks weight.
_C.MODEL.LOSSES.CENTER.SCALE = 0.0005

# CircleLoss (pair-wise, on cosine similarities); the class-level circle is MODEL.HEADS.CLS_LAYER "Circle".
_C.MODEL.LOSSES.CIRCLE = CN()
# Relaxation m: optima 1 - m (positives) and m (negatives), alpha_p = [1 + m - s_p]_+, alpha_n = [s_n + m]_+.
_C.MODEL.LOSSES.CIRCLE.MARGIN = 0.25
# Scale gamma of the pair similarities.
_C.MODEL.LOSSES.CIRCLE.GAMMA = 128.0
_C.MODEL.LOSSES.CIRCLE.FEAT_KEY = "features"
_C.MODEL.LOSSES.CIRCLE.SCALE = 1.0

# ProxyNCALoss: logits -SIM_SCALE * |f^ - p^_k|^2 over NUM_CLASSES learned proxies, then CE.
_C.MODEL.LOSSES.PROXY_NCA = CN()
# Leave the own proxy out of the softmax denominator (the survey's and the original paper's form).
_C.MODEL.LOSSES.PROXY_NCA.EXCLUDE_POSITIVE = True
_C.MODEL.LOSSES.PROXY_NCA.SIM_SCALE = 1.0
_C.MODEL.LOSSES.PROXY_NCA.LEARN_SCALE = False
_C.MODEL.LOSSES.PROXY_NCA.FEAT_DIM = 0
_C.MODEL.LOSSES.PROXY_NCA.FEAT_KEY = "features"
_C.MODEL.LOSSES.PROXY_NCA.SCALE = 1.0

# RatioLoss (circle-based ratio loss): mean over the batch's classes j of
# max_{y_i = j} d(f^_i, w^_j) / (min_{k != j} d(w^_k, w^_j) + EPS), w = outputs["cls_weight"].
_C.MODEL.LOSSES.RATIO = CN()
# The moderating term eps added to the inter-class distance (the paper: 0.5).
_C.MODEL.LOSSES.RATIO.EPS = 0.5
# "cosine" (1 - cos), "chord" (Euclidean distance on the unit sphere) or "angle" (acos).
_C.MODEL.LOSSES.RATIO.DISTANCE = "cosine"
# The classifier's input, since the loss compares features with the class weights.
_C.MODEL.LOSSES.RATIO.FEAT_KEY = "neck_features"
_C.MODEL.LOSSES.RATIO.SCALE = 1.0

# NTupletLoss: -log softmax of the positive among N scaled cosine similarities (anchor vs one
# positive and N - 1 negatives of distinct classes), over tuplets drawn uniformly per batch.
_C.MODEL.LOSSES.NTUPLET = CN()
# N (capped at the number of classes in the batch); 2 = soft-margin triplet on cosine distance.
_C.MODEL.LOSSES.NTUPLET.CLASSES_PER_TUPLET = 16
# Tuplets per batch; 0 = the batch's number of triplets (11,520 for P = 16, K = 4).
_C.MODEL.LOSSES.NTUPLET.NUM_TUPLETS = 0
_C.MODEL.LOSSES.NTUPLET.SIM_SCALE = 16.0
_C.MODEL.LOSSES.NTUPLET.LEARN_SCALE = True
_C.MODEL.LOSSES.NTUPLET.FEAT_KEY = "features"
_C.MODEL.LOSSES.NTUPLET.SCALE = 1.0

# P2STripletLoss: soft-margin triplet softplus(SIM_SCALE * (d_ap - d_an)) whose references are the
# batch's class prototypes (means).
_C.MODEL.LOSSES.P2S = CN()
# "cosine" (1 - cos) or "euclidean".
_C.MODEL.LOSSES.P2S.DISTANCE = "cosine"
# Negative prototype: "hardest" (closest other class) or "random".
_C.MODEL.LOSSES.P2S.NEGATIVE = "hardest"
# Leave the anchor out of its own class prototype.
_C.MODEL.LOSSES.P2S.EXCLUDE_ANCHOR = False
_C.MODEL.LOSSES.P2S.SIM_SCALE = 16.0
_C.MODEL.LOSSES.P2S.LEARN_SCALE = True
_C.MODEL.LOSSES.P2S.FEAT_KEY = "features"
_C.MODEL.LOSSES.P2S.SCALE = 1.0

# PNTupletLoss: CE of each anchor over SIM_SCALE * cos(f_i, prototype_c), prototypes = batch class means.
_C.MODEL.LOSSES.PN = CN()
# N classes per anchor (own + N - 1 drawn at random); 0 = all classes of the batch.
_C.MODEL.LOSSES.PN.CLASSES_PER_TUPLET = 0
# Leave the anchor out of its own class prototype.
_C.MODEL.LOSSES.PN.EXCLUDE_ANCHOR = False
_C.MODEL.LOSSES.PN.SIM_SCALE = 16.0
_C.MODEL.LOSSES.PN.LEARN_SCALE = True
_C.MODEL.LOSSES.PN.FEAT_KEY = "features"
_C.MODEL.LOSSES.PN.SCALE = 1.0

# MPNTupletLoss: as PN with prototypes = class means of phi(f), phi = Linear(D, D / REDUCTION) ->
# BatchNorm1d -> Linear(D / REDUCTION, D), owned by the loss module (unused at test time).
_C.MODEL.LOSSES.MPN = CN()
# N classes per anchor (own + N - 1 drawn at random); 0 = all classes of the batch.
_C.MODEL.LOSSES.MPN.CLASSES_PER_TUPLET = 0
# Leave the anchor out of its own class prototype (the paper includes it).
_C.MODEL.LOSSES.MPN.EXCLUDE_ANCHOR = False
# phi's hidden size is D / REDUCTION (the paper: 8).
_C.MODEL.LOSSES.MPN.REDUCTION = 8
_C.MODEL.LOSSES.MPN.FEAT_DIM = 0
_C.MODEL.LOSSES.MPN.SIM_SCALE = 16.0
_C.MODEL.LOSSES.MPN.LEARN_SCALE = True
_C.MODEL.LOSSES.MPN.FEAT_KEY = "features"
_C.MODEL.LOSSES.MPN.SCALE = 1.0

# SparsePairwiseLoss (alias AdaSPLoss; the AdaSP fork's block ADASP is read as SP).
_C.MODEL.LOSSES.SP = CN()
# Temperature T of the cosine similarities (0.04 person, 0.05 vehicle ReID).
_C.MODEL.LOSSES.SP.TEMP = 0.04
# "sp-h" (hardest positive pair), "sp-lh" (least-hard positive) or "adasp" (adaptive mix).
_C.MODEL.LOSSES.SP.TYPE = "adasp"
_C.MODEL.LOSSES.SP.FEAT_KEY = "features"
_C.MODEL.LOSSES.SP.SCALE = 1.0

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
# Root of the datasets; "" = the REID_DATASETS environment variable, else "datasets/". Each dataset
# is looked up as its own folder under the root (datasets/README.md) or as the root itself.
_C.DATASETS.ROOT = ""
# Registered training datasets; several are combined with distinct identities (pids relabelled
# 0..C-1 in this order, each dataset keeping its own id space).
_C.DATASETS.NAMES = ["Market1501"]
# Test datasets, each evaluated and reported separately.
_C.DATASETS.TESTS = ["Market1501"]
# Add query and gallery of the training datasets to the training set (distractors excluded).
_C.DATASETS.COMBINEALL = False

# The built-in synthetic dataset ("Synthetic"): generated once into <root>/synthetic/<folder named
# after these values>/ in the Market-1501 layout; changing any value generates a new folder.
_C.DATASETS.SYNTHETIC = CN()
# Seed of the generator (the same seed gives the same images).
_C.DATASETS.SYNTHETIC.SEED = 0
# Identities in bounding_box_train/.
_C.DATASETS.SYNTHETIC.NUM_TRAIN_IDS = 150
# Identities in query/ (two images each, from two cameras) and bounding_box_test/ (the rest).
_C.DATASETS.SYNTHETIC.NUM_TEST_IDS = 150
# Images per identity (at least 4), spread over 2..NUM_CAMERAS cameras with 2 or more each.
_C.DATASETS.SYNTHETIC.IMGS_PER_ID = 10
# Number of cameras (2..9), each with its own background, viewpoint, lighting, blur, scale and occlusion.
_C.DATASETS.SYNTHETIC.NUM_CAMERAS = 6
# [height, width] of the generated images.
_C.DATASETS.SYNTHETIC.IMAGE_SIZE = [128, 64]
# Gallery distractors (pid 0000, people not in any query) and junk boxes (pid -1, dropped by the reader).
_C.DATASETS.SYNTHETIC.NUM_DISTRACTORS = 100
_C.DATASETS.SYNTHETIC.NUM_JUNK = 50

_C.DATASETS.CUHK03 = CN()
# True = the hand-labeled boxes, False = the detected (DPM) boxes.
_C.DATASETS.CUHK03.LABELED = True
# False = the 767/700 protocol (Zhong et al. 2017); True = the classic 20 random splits of cuhk-03.mat
# (1,367 train / 100 test persons; query = gallery = the test images).
_C.DATASETS.CUHK03.CLASSIC_SPLIT = False
# Which classic split (0..19); only read when CLASSIC_SPLIT is True.
_C.DATASETS.CUHK03.SPLIT_ID = 0

_C.DATASETS.MSMT17 = CN()
# True = train on list_train.txt only (30,248 images); False = list_train + list_val (32,621, the usual setting).
_C.DATASETS.MSMT17.TRAIN_ONLY = False

_C.DATASETS.VEHICLEID = CN()
# Seed of the gallery draw (one image per test vehicle to the gallery, the rest to the query);
# the published protocol runs and averages repeats 0..9.
_C.DATASETS.VEHICLEID.REPEAT = 0

# The "Custom" dataset: a folder of one's own (datasets/README.md).
_C.DATASETS.CUSTOM = CN()
# The folder, relative to the data root or absolute.
_C.DATASETS.CUSTOM.DIR = "custom"
# "" = the Market-1501 layout inside DIR; else a CSV file (inside DIR, or absolute) of rows
# path,pid,camid,split (path relative to the CSV's folder, camid 0-based, split train/query/gallery).
_C.DATASETS.CUSTOM.CSV = ""

# ---------------------------------------------------------------------------------------------
# DATALOADER (reid/data)
# ---------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
# "NaiveIdentitySampler" (PK: P ids x NUM_INSTANCE images) or "TrainingSampler" (shuffled images).
_C.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
# K of the PK sampler.
_C.DATALOADER.NUM_INSTANCE = 4
# Length of a PK epoch: "identities" = every identity once, ceil(#ids / P) batches; "images" =
# one pass over the images, ceil(#images / IMS_PER_BATCH) batches (fastreid's and torchreid's
# epoch, the unit of the papers' epoch counts), identities recurring as needed.
_C.DATALOADER.EPOCH_LENGTH = "identities"
_C.DATALOADER.NUM_WORKERS = 4

# ---------------------------------------------------------------------------------------------
# SOLVER (reid/solver)
# ---------------------------------------------------------------------------------------------
_C.SOLVER = CN()
# Mixed precision on CUDA (autocast): DTYPE "float16" (with a gradient scaler, checkpointed) or "bfloat16".
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
_C.SOLVER.AMP.DTYPE = "float16"
# Channels-last memory format for model and images on CUDA.
_C.SOLVER.CHANNELS_LAST = False
# Gradient clipping before each optimizer step: CLIP_TYPE "norm" (total norm of NORM_TYPE) or "value".
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 5.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
# Exponential moving average of the weights (buffers copied); evaluation then uses the averaged model.
_C.SOLVER.EMA = CN()
_C.SOLVER.EMA.ENABLED = False
_C.SOLVER.EMA.DECAY = 0.9999
# Split each batch into this many identity-complete micro-batches and accumulate their gradients
# (for batches that do not fit in memory; batch-level losses then see P / GRAD_ACCUM_STEPS identities).
_C.SOLVER.GRAD_ACCUM_STEPS = 1
# Training stages of one run (see reid/solver/stages.py): a list of mappings with EPOCHS, LOSSES
# (name -> weight), TRAINABLE (parameter-name regexes) and SOLVER (schedule overrides).
_C.SOLVER.STAGES = []
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
# MODEL.FREEZE_LAYERS stay frozen (no updates, norm statistics kept) for the first FREEZE_ITERS iterations.
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
# Distance (reid/evaluation/distance.py): "cosine" = 1 - cos of L2-normalised features;
# "euclidean" = SQUARED Euclidean distance (fastreid's convention; same ranking as Euclidean).
_C.TEST.METRIC = "cosine"
_C.TEST.FLIP = CN()
# Average each image's feature with its horizontally flipped copy's.
_C.TEST.FLIP.ENABLED = False
# Queries per chunk for distances, ranking and re-ranking; 0 = chosen from the gallery size
# (about 4M distances per chunk on CPU, 16M on CUDA), which bounds the extra memory.
_C.TEST.CHUNK_SIZE = 0
# torch CPU threads for the ranking metric's passes (distances keep torch's setting); 0 = torch's
# setting. One thread avoids the stalls of multi-threaded short passes on shared cores.
_C.TEST.METRIC_THREADS = 1
# AP as the Market-1501 devkit computes it (trapezoid rule) instead of the non-interpolated AP
# of torchreid / fastreid (the default, used by the papers' tables).
_C.TEST.OFFICIAL_MARKET_AP = False
# Alpha query expansion over query + gallery features (fastreid's aqe), before the distances.
_C.TEST.AQE = CN()
_C.TEST.AQE.ENABLED = False
# Rounds of expansion.
_C.TEST.AQE.QE_TIME = 1
# Neighbours averaged per feature (the feature itself included).
_C.TEST.AQE.QE_K = 5
# Neighbour weight = cosine similarity ** ALPHA.
_C.TEST.AQE.ALPHA = 3.0
# k-reciprocal re-ranking (Zhong et al., CVPR 2017) of the TEST.METRIC distance, which enters
# squared and divided by each row's maximum, as in the paper's code (reid/evaluation/rerank.py).
_C.TEST.RERANK = CN()
_C.TEST.RERANK.ENABLED = False
# k of the k-reciprocal neighbours (k/2 for the expansion step).
_C.TEST.RERANK.K1 = 20
# Neighbours of the local query expansion of the encodings (1 = none).
_C.TEST.RERANK.K2 = 6
# Final distance = (1 - LAMBDA) * Jaccard distance + LAMBDA * original distance.
_C.TEST.RERANK.LAMBDA = 0.3
# TPR at fixed FPR over all kept query-gallery pairs, reported as "TPR@FPR=1e-04" etc.
_C.TEST.ROC = CN()
_C.TEST.ROC.ENABLED = False
# Target false positive rates.
_C.TEST.ROC.FPRS = [1e-4, 1e-3, 1e-2]
# Classic CUHK03 single-gallery-shot CMC (one random gallery image per identity, averaged over
# REPEATS seeded draws) for test sets whose name contains "CUHK03"; mAP stays the full-gallery one.
_C.TEST.CUHK03_CLASSIC = CN()
_C.TEST.CUHK03_CLASSIC.ENABLED = False
_C.TEST.CUHK03_CLASSIC.REPEATS = 10
_C.TEST.CUHK03_CLASSIC.SEED = 0
