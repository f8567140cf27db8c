"""The "training a neural network" tutorial on MNIST, on fastmlp.

Ports the tutorial in ``../shared/seeds/001_*.txt`` (seed 001).

The PyTorch script, line for line, with ``torch``/``torchvision`` swapped for
``fastmlp``: a 784-64-64-64-10 ReLU network with log_softmax outputs, Adam
lr 0.001, batches of 10, three epochs, then the test accuracy.

    python examples/mnist_adam_mlp.py [--epochs 3] [--data DIR]

MNIST is read from --data, else $FASTMLP_DATA, else ~/.cache/fastmlp (and
downloaded there when missing).
"""
import argparse
import time

import fastmlp as torch
import fastmlp.nn as nn
import fastmlp.nn.functional as F
from fastmlp import datasets, transforms

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=3, help="full passes over the data (default: 3)")
parser.add_argument("--data", default=None, help="folder with the MNIST idx files (default: $FASTMLP_DATA, "
                                                 "else ~/.cache/fastmlp)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
torch.manual_seed(args.seed)

train = datasets.MNIST(args.data, train=True, download=True,
                       transform=transforms.Compose([
                           transforms.ToTensor()
                       ]))

test = datasets.MNIST(args.data, train=False, download=True,
                      transform=transforms.Compose([
                          transforms.ToTensor()
                      ]))

trainset = torch.utils.data.DataLoader(train, batch_size=10, shuffle=True)
testset = torch.utils.data.DataLoader(test, batch_size=10, shuffle=False)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 64)
        self.fc4 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.relu(self.fc3(x))
        x = self.fc4(x)
        return F.log_softmax(x, dim=1)


net = Net()
print(net)

import fastmlp.optim as optim  # noqa: E402

loss_function = nn.CrossEntropyLoss()
optimizer = optim.Adam(net.parameters(), lr=0.001)

for epoch in range(args.epochs):  # 3 full passes over the data
    start = time.perf_counter()
    for data in trainset:  # `data` is a batch of data
        X, y = data  # X is the batch of features, y is the batch of targets.
        net.zero_grad()  # sets gradients to 0 before loss calc. You will do this likely every step.
        output = net(X.view(-1, 784))  # pass in the reshaped batch (recall they are 28x28 atm)
        loss = F.nll_loss(output, y)  # calc and grab the loss value
        loss.backward()  # apply this loss backwards thru the network's parameters
        optimizer.step()  # attempt to optimize weights to account for loss/gradients
    print(loss, f"(epoch {epoch + 1}: {time.perf_counter() - start:.1f} s)", flush=True)  # print loss.

correct = 0
total = 0

with torch.no_grad():
    for data in testset:
        X, y = data
        output = net(X.view(-1, 784))
        for idx, i in enumerate(output):
            if torch.argmax(i) == y[idx]:
                correct += 1
            total += 1

print("Accuracy: ", round(correct / total, 3))
print(f"Test accuracy: {100 * correct / total:.2f}% ({correct}/{total})")
