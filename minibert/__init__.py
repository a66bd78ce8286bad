"""minibert: BERT built from scratch in PyTorch, small enough to read and fast enough to use.

The public names are those of pytorch-pretrained-bert 0.6.2 (BertTokenizer, BertModel, BertForMaskedLM, ...,
BertAdam, WarmupLinearSchedule), so the 2019 documentation reads the same here.
"""

__version__ = "0.1.0"

from minibert.tokenization import BasicTokenizer, BertTokenizer, WordpieceTokenizer
from minibert.modeling import BertConfig, BertModel
from minibert.heads import (
    BertForMaskedLM, BertForMultipleChoice, BertForNextSentencePrediction, BertForPreTraining,
    BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
)
from minibert.optimization import (
    BertAdam, ConstantLR, WarmupConstantSchedule, WarmupCosineSchedule, WarmupCosineWithHardRestartsSchedule,
    WarmupLinearSchedule,
)
from minibert.pretraining import (
    PretrainingCollator, PretrainingDataset, TrainingInstance, create_training_instances, mask_tokens, pretrain,
)
from minibert.datasets import InputExample, read_chnsenticorp, read_mrpc
from minibert.training import TrainingArguments, encode_examples, evaluate, train
from minibert.features import extract_features, read_features, roc_auc, sentence_vectors
from minibert.viz import get_attention, head_statistics
