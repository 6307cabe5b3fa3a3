from __future__ import annotations

import factory

from apps.catalog.models import CatalogModel


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogModel

    name = factory.Sequence(lambda n: f"model-{n}")
    source = factory.LazyAttribute(lambda m: f"example-org/{m.name}")
    family = "llama"
    parameter_count = 8_000_000_000
    context_length = 8192
    license = "llama3"
    dtype = "bfloat16"
    num_layers = 32
    hidden_size = 4096
    num_attention_heads = 32
    num_kv_heads = 8
    head_dim = 128
