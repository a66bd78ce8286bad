"""minibert: BERT built from scratch in PyTorch, small enough to read and fast enough to use.

The public names are those of pytorch-pretrained-bert 0.6.2 (BertTokenizer, BertModel, BertForMaskedLM, ...,
BertAdam, WarmupLinearSchedule), so the 2019 documentation reads the same here.

The modules form one spine, read bottom to top (config, inputs, ..., modeling, heads, data, training,
pretraining, ...): each imports only from the modules below it, and nothing in the library imports ``course``.
The README's "The library" section draws the whole picture, and tests/test_imports.py checks every import
against it.
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
