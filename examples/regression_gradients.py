"""The regression trainer of the "training neural networks" chapter, on fastmlp.

Ports the tutorial in ``../shared/seeds/002_*.txt`` (seed 002).

The PyTorch code, line for line, with ``torch`` swapped for ``fastmlp``: noisy
samples of y = x², a small sigmoid network, MSE loss, SGD, batches of one, and
the chapter's ``trainer()`` that returns the mean loss of every epoch. Then the
same training with ``fastmlp.train.fit``, which gives exactly the same losses.

    python examples/regression_gradients.py [--epochs 5]
"""
import argparse

import fastmlp as torch
from fastmlp import nn
from fastmlp.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=5, help="passes over the 40 samples (default: 5)")
parser.add_argument("--hidden", type=int, default=6, help="hidden units (default: 6)")
parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default: 0.1)")
args = parser.parse_args()


class network(torch.nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden = torch.nn.Linear(input_size, hidden_size)
        self.output = torch.nn.Linear(hidden_size, output_size)

    def forward(self, x):
        x = self.hidden(x)
        x = torch.sigmoid(x)
        x = self.output(x)
        return x


def trainer(model, criterion, optimizer, dataloader, epochs=5):
    """Simple training wrapper for PyTorch network."""

    train_loss = []
    for epoch in range(epochs):  # for each epoch
        losses = 0
        for X, y in dataloader:  # for each batch
            optimizer.zero_grad()  # Zero all the gradients w.r.t. parameters
            y_hat = model(X).flatten()  # Forward pass to get output
            loss = criterion(y_hat, y)  # Calculate loss based on output
            loss.backward()  # Calculate gradients w.r.t. parameters
            optimizer.step()  # Update parameters
            losses += loss.item()  # Add loss for this batch to running total
        train_loss.append(losses / len(dataloader))  # loss = total loss in epoch / number of batches = loss per batch
    return train_loss


def make_run():
    """The chapter's data, model and optimizer, from the same seed each time."""
    torch.manual_seed(0)
    X = torch.arange(-3, 3, 0.15)
    y = X ** 2 + X * torch.normal(0, 1, (40,))
    dataloader = DataLoader(TensorDataset(X[:, None], y), batch_size=1, shuffle=True)
    model = network(1, args.hidden, 1)
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    return model, criterion, optimizer, dataloader


model, criterion, optimizer, dataloader = make_run()
train_loss = trainer(model, criterion, optimizer, dataloader, epochs=args.epochs)
for epoch, loss in enumerate(train_loss, start=1):
    print(f"epoch {epoch}: mean loss per batch {loss:.4f}")

# the same run through fastmlp.train.fit (Keras-style): one History record per epoch
model2, criterion2, optimizer2, dataloader2 = make_run()
history = torch.train.fit(model2, lambda out, target: criterion2(out.flatten(), target), optimizer2, dataloader2,
                          epochs=args.epochs, progress=False)
print("fit gives the same losses:", history["train_loss"] == train_loss)
