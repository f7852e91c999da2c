from django.db import models


class Account(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    username = models.CharField(max_length=64)
    role = models.CharField(max_length=16)


class Conversation(models.Model):
    user = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    waiter = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(auto_now_add=True)


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE)
    sender = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=32)
    text = models.TextField()
    op_id = models.CharField(max_length=128, null=True)
    created = models.DateTimeField(auto_now_add=True)
