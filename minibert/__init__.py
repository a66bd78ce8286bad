"""minibert: BERT built from scratch in PyTorch, small enough to read and fast enough to use.

The public names are those of pytorch-pretrained-bert 0.6.2 (BertTokenizer, BertModel, BertForMaskedLM, ...,
BertAdam, WarmupLinearSchedule), so the 2019 documentation reads the same here.

The modules form one spine, read bottom to top; each imports only from modules below it, and nothing in the
library imports ``course`` (tests/test_imports.py checks both)::

    course/       exercise checkers, widgets, live plots: imported by the notebooks, never by the library
    pretraining   masking, next-sentence pairs, pre-training data; pre-trains through the one loop
    training      one loop for every task, driven by the model's loss; metrics passed in
    data          encoded examples -> padded tensors (one collate for every use)
    heads         the task models (BertForMaskedLM, ...), each computing its own loss
    modeling      embeddings -> attention -> layer -> encoder -> pooler -> BertModel
    checkpoints   read/write weights by Hugging Face names; each head declares its own prefixes
    config        BertConfig (frozen dataclass, validated)

Beside the spine: tokenization (text -> ids, the only place that knows the special tokens), optimization
(BertAdam and its schedules), datasets and metrics (readers, scores), features and viz (what BERT's layers and
heads compute), squad and memory (task and memory tools), assets (files, downloads) and runtime (device, seeds).
"""

__version__ = "0.1.0"

from minibert.assets import CONFIG_NAME, PYTORCH_PRETRAINED_BERT_CACHE, WEIGHTS_NAME, cached_path  # 0.6.2's file_utils
from minibert.tokenization import BasicTokenizer, BertTokenizer, WordpieceTokenizer
from minibert.config import BertConfig
from minibert.modeling import BertModel
from minibert.heads import (
    BertForMaskedLM, BertForMultipleChoice, BertForNextSentencePrediction, BertForPreTraining,
    BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
)
from minibert.optimization import (
    BertAdam, ConstantLR, WarmupConstantSchedule, WarmupCosineSchedule, WarmupCosineWithHardRestartsSchedule,
    WarmupCosineWithWarmupRestartsSchedule, WarmupLinearSchedule,
)
from minibert.pretraining import (
    PretrainingCollator, PretrainingDataset, TrainingInstance, create_training_instances, mask_tokens, pretrain,
)
from minibert.datasets import InputExample, read_chnsenticorp, read_mrpc
from minibert.training import TrainingArguments, encode_examples, evaluate, train
from minibert.features import extract_features, read_features, sentence_vectors
from minibert.metrics import roc_auc
from minibert.viz import get_attention, head_statistics
